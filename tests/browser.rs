//! The search page in a real headless Chromium, driven over WebDriver
//! (chromedriver): type a query, see the right dossier, open a record, use
//! the typeahead with the keyboard.

mod common;

use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fantoccini::key::Key;
use fantoccini::{Client, ClientBuilder, Locator};

const CHROMIUM: &str = "/usr/bin/chromium";
const DRIVER: &str = "/usr/bin/chromedriver";

struct Driver(Child);

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// chromedriver on a free port, once it accepts connections.
fn start_driver() -> (Driver, u16) {
    let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let child = Command::new(DRIVER)
        .arg(format!("--port={port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start chromedriver");
    let driver = Driver(child);
    let deadline = Instant::now() + Duration::from_secs(20);
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "chromedriver did not listen on {port} within 20 s");
        std::thread::sleep(Duration::from_millis(100));
    }
    (driver, port)
}

async fn browser(port: u16, profile: &Path) -> Client {
    let mut caps = serde_json::Map::new();
    // The flags keep Chromium off the network this machine does not have, and run it as root in a sandbox-less CI.
    caps.insert(
        "goog:chromeOptions".into(),
        serde_json::json!({
            "binary": CHROMIUM,
            "args": ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                     "--disable-background-networking", "--disable-component-update", "--disable-sync",
                     "--disable-dev-shm-usage", "--window-size=1280,900",
                     format!("--user-data-dir={}", profile.display())]
        }),
    );
    ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
        .capabilities(caps)
        .connect(&format!("http://127.0.0.1:{port}"))
        .await
        .expect("a WebDriver session in Chromium")
}

/// Polls a JavaScript expression until it is true.
async fn until(c: &Client, what: &str, js: &str) {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let v = c.execute(&format!("return !!({js});"), vec![]).await.expect("run script");
        if v == serde_json::Value::Bool(true) {
            return;
        }
        if Instant::now() > deadline {
            let html = c.source().await.unwrap_or_default();
            panic!("timed out waiting for {what}; page:\n{}", &html[..html.len().min(4000)]);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn have_browser() -> bool {
    if Path::new(CHROMIUM).exists() && Path::new(DRIVER).exists() {
        return true;
    }
    if std::env::var("CI").is_ok_and(|v| v == "true") {
        panic!("{CHROMIUM} and {DRIVER} are required under CI=true (.ci/run installs chromium and chromium-driver)");
    }
    eprintln!("skipping: {CHROMIUM} or {DRIVER} is missing (apt-get install chromium chromium-driver)");
    false
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rep_types_a_query_sees_the_dossier_opens_a_page_and_uses_typeahead() {
    if !have_browser() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let cfg = common::demo(&tmp.path().join("co"), 30);
    let jane = common::search(&cfg, "jane.smith@acme.example")["dossiers"][0]["id"].as_str().unwrap().to_string();
    let srv = common::start(&cfg);
    let (_driver, port) = start_driver();
    let c = browser(port, &tmp.path().join("chromium-profile")).await;

    c.goto(&format!("http://{}/", srv.1)).await.unwrap();
    // The page asks for a key; a wrong one is refused with the server's reason.
    until(&c, "the sign-in dialog", "!document.querySelector('#login').hidden").await;
    let key = c.find(Locator::Css("#key")).await.unwrap();
    key.send_keys(&format!("dsk_wrong{}", char::from(Key::Enter))).await.unwrap();
    until(&c, "the refusal", "!document.querySelector('#lerr').hidden").await;
    let refusal = c.find(Locator::Css("#lerr")).await.unwrap().text().await.unwrap();
    assert!(refusal.contains("not valid"), "{refusal}");
    // Legal staff, who see the contracts (and the CRM), sign in.
    let legal = common::demo_key(&cfg, "legal");
    key.clear().await.unwrap();
    key.send_keys(&format!("{legal}{}", char::from(Key::Enter))).await.unwrap();
    until(&c, "signing in", "document.querySelector('#login').hidden").await;
    let who = c.find(Locator::Css("#who")).await.unwrap().text().await.unwrap();
    assert!(who.contains("legal"), "{who}");
    let q = c.find(Locator::Css("#q")).await.unwrap();
    // The misspelt name as the contract writes it, plus contract words.
    q.send_keys(&format!("jayne smyth termination notice{}", char::from(Key::Enter))).await.unwrap();
    until(&c, "a dossier card", "document.querySelector('article.card')").await;
    let first = c.find(Locator::Css("article.card")).await.unwrap();
    assert_eq!(first.attr("data-customer").await.unwrap().as_deref(), Some(jane.as_str()));
    let text = first.text().await.unwrap();
    assert!(text.contains("Jane Smith"), "{text}");
    assert!(text.contains("Matched:"), "the card says why it matched: {text}");

    // The matching contract page opens in the record view, with its page number.
    let page = first.find(Locator::Css(".rec.m a[data-key*='#p']")).await.expect("a matched contract page");
    let key = page.attr("data-key").await.unwrap().unwrap();
    page.click().await.unwrap();
    until(&c, "the record view", "getComputedStyle(document.querySelector('#viewer')).display !== 'none'").await;
    let shown = c.find(Locator::Css("#vbody")).await.unwrap().text().await.unwrap();
    assert!(shown.contains(&key), "the view names the record: {shown}");
    assert!(shown.contains("page "), "the view gives the page: {shown}");
    assert!(shown.to_lowercase().contains("termination"), "{shown}");
    let marked = c.find(Locator::Css("#vbody mark")).await.expect("the query's words are highlighted");
    assert!(["termination", "notice"].contains(&marked.text().await.unwrap().to_lowercase().as_str()));
    // Escape closes it and gives the search box back.
    c.find(Locator::Css("#close")).await.unwrap().send_keys(&char::from(Key::Escape).to_string()).await.unwrap();
    until(&c, "the view to close", "getComputedStyle(document.querySelector('#viewer')).display === 'none'").await;
    until(&c, "focus on the search box", "document.activeElement === document.querySelector('#q')").await;

    // Typeahead: a few letters, arrow down, Enter opens that customer's dossier.
    let q = c.find(Locator::Css("#q")).await.unwrap();
    q.clear().await.unwrap();
    q.send_keys("jane smi").await.unwrap();
    until(&c, "suggestions", "document.querySelectorAll('#sugg li').length > 0").await;
    q.send_keys(&format!("{}{}", char::from(Key::Down), char::from(Key::Enter))).await.unwrap();
    until(&c, "the suggested dossier", &format!("document.querySelector(\"article.card[data-customer='{jane}']\")"))
        .await;
    assert!(c.current_url().await.unwrap().as_str().contains(&format!("customer={jane}")));

    // A query with unreadable syntax still answers, with a notice rather than an error.
    c.goto(&format!("http://{}/?q={}", srv.1, "%22unclosed%20AND%20(")).await.unwrap();
    until(
        &c,
        "an answer",
        "document.querySelector('.meta') && !document.querySelector('.meta').textContent.startsWith('Searching')",
    )
    .await;
    let out = c.find(Locator::Css("#out")).await.unwrap().text().await.unwrap();
    assert!(!out.contains("failed"), "{out}");
    c.close().await.unwrap();
}
