//! Facts from `../shared/corpus/EXPECTED.md` recovered by the extractors.
//! Skips (with a printed reason) without the shared corpus; fails under CI=true.

mod common;

use dossier::connectors::SourceSpec;
use dossier::connectors::extract::{ExtractError, Extracted, Extractor};
use dossier::schema::RecordKind;

fn extractor(passwords: &[&str]) -> Extractor {
    let mut spec = SourceSpec::files("corpus", ".");
    spec.passwords = passwords.iter().map(|s| s.to_string()).collect();
    Extractor::new(&spec)
}

fn extract(rel: &str, passwords: &[&str]) -> Option<Result<Extracted, ExtractError>> {
    let root = common::shared_corpus()?;
    Some(extractor(passwords).extract_file(rel, &root.join(rel)))
}

fn page_text(e: &Extracted, n: u32) -> String {
    let t = e.records.iter().find(|r| r.page == Some(n)).map(|r| r.text.clone()).unwrap_or_default();
    t.split_whitespace().collect::<Vec<_>>().join(" ")
}

#[test]
fn pdf_facts() {
    let Some(r) = extract("pdf/contracts/GSA_ADS_BPA_RFQ_4QTFHS150004_Mod5.pdf", &[]) else { return };
    let e = r.unwrap();
    assert_eq!(e.records.iter().filter(|r| r.kind == RecordKind::Page).count(), 19);
    let p1 = page_text(&e, 1);
    assert!(p1.contains("4QTFHS150004"), "{p1}");
    assert!(page_text(&e, 3).contains("NAICS Code 541512"));
    assert!(page_text(&e, 11).contains("12.0 INVOICES"));

    let e = extract("pdf/pypdf_samples/pdflatex-4-pages.pdf", &[]).unwrap().unwrap();
    assert!(page_text(&e, 1).starts_with("Hello, here is some text without a meaning."), "{}", page_text(&e, 1));
}

#[test]
fn encrypted_pdfs_open_with_the_empty_or_configured_password_and_fail_cleanly_otherwise() {
    let Some(r) = extract("pdf/pypdf_samples/libreoffice-writer-password.pdf", &[]) else { return };
    assert!(matches!(r, Err(ExtractError::Encrypted(_))), "{r:?}");
    let e = extract("pdf/pypdf_samples/libreoffice-writer-password.pdf", &["openpassword"]).unwrap().unwrap();
    assert!(page_text(&e, 1).starts_with("Lorem ipsum dolor sit amet"), "{}", page_text(&e, 1));
    let e = extract("pdf/hostile_qpdf/enc-R2,V1.pdf", &[]).unwrap().unwrap();
    assert!(page_text(&e, 1).contains("Potato 0"));
    let e = extract("pdf/public_records/password-example.pdf", &["test"]).unwrap().unwrap();
    assert!(page_text(&e, 1).contains("backup solution for network environments"));
    let r = extract("pdf/public_records/empty.pdf", &[]).unwrap();
    assert!(matches!(r, Err(ExtractError::Invalid { .. })), "{r:?}");
}

#[test]
fn mailbox_facts() {
    let Some(r) = extract("email/mimekit/mbox/unmunged.mbox", &[]) else { return };
    let e = r.unwrap();
    let mails: Vec<_> = e.records.iter().filter(|r| r.kind == RecordKind::Email).collect();
    assert_eq!(mails.len(), 2, "{:?}", mails.iter().map(|m| &m.title).collect::<Vec<_>>());
    assert!(mails.iter().all(|m| m.text.contains("From Russia with love")));
    for (file, n) in [("email/mimekit/mbox/simple.mbox", 3), ("email/mimekit/mbox/issue1189.mbox", 4)] {
        let e = extract(file, &[]).unwrap().unwrap();
        assert_eq!(e.records.iter().filter(|r| r.kind == RecordKind::Email && r.parent.is_none()).count(), n, "{file}");
    }
    let e = extract("email/ruby_mail/attachment_emails/attachment_pdf.eml", &[]).unwrap().unwrap();
    assert_eq!(e.records[0].title, "Another PDF with 🎉 Unicode chars in it 🍿");
    assert_eq!(e.records[0].field("from"), Some("Test Tester <xxxx@xxxx.com>"));
    let e = extract("email/php_imap/issue-348.eml", &[]).unwrap().unwrap();
    assert!(e.records.iter().any(|r| r.field("attachment") == Some("Kelvinsong—Font_test_page_bold.pdf")));
    assert!(e.records.iter().any(|r| r.kind == RecordKind::Page), "the attached PDF is searchable");
    let e = extract("email/ruby_mail/multi_charset/japanese_iso_2022.eml", &[]).unwrap().unwrap();
    assert_eq!(e.records[0].title, "まみむめも");
    assert!(e.records[0].text.starts_with("すみません。"));
    // Nested 105 levels deep: no stack overflow, bounded depth.
    assert!(extract("email/mailparse/nested.eml", &[]).unwrap().is_ok());
}

#[test]
fn spreadsheet_facts() {
    let Some(r) = extract("spreadsheets/gov/DOL_WHD_14c_Pricing_Template.xlsx", &[]) else { return };
    let e = r.unwrap();
    let row6 = e.records.iter().find(|r| r.key.ends_with("!r6")).expect("row 6");
    assert_eq!(row6.field("Item"), Some("0001"), "{:?}", row6.fields);
    assert_eq!(row6.field("Unit"), Some("Hour"));
    let r = extract("spreadsheets/calamine/pass_protected.xlsx", &[]).unwrap();
    assert!(matches!(r, Err(ExtractError::Encrypted(_))), "{r:?}");
    let e = extract("spreadsheets/calamine/any_sheets.xlsx", &[]).unwrap().unwrap();
    assert!(e.records.iter().any(|r| r.key.contains("!Visible!")));
}
