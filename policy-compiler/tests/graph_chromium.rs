//! `meshward graph --format html` renders in a real browser: headless
//! Chromium (the Debian package `chromium`, installed by
//! `scripts/install-chromium.sh` when missing) loads the page from a file,
//! with no network, and the SVG's node labels are laid out with real sizes.

#![allow(
    clippy::expect_used,
    clippy::unwrap_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "a test crate: a failed expectation should panic loudly"
)]

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// The browser, installed first when missing.
fn chromium() -> PathBuf {
    let output = Command::new("bash")
        .arg(workspace().join("scripts/install-chromium.sh"))
        .stdin(Stdio::null())
        .output()
        .expect("run scripts/install-chromium.sh");
    assert!(
        output.status.success(),
        "scripts/install-chromium.sh failed (install the Debian package `chromium`):\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let path = String::from_utf8_lossy(&output.stdout).trim().to_owned();
    assert!(!path.is_empty(), "install-chromium.sh printed no path");
    PathBuf::from(path)
}

/// Runs headless Chromium on `page` with `mode` (`--dump-dom` or
/// `--screenshot=…`), killing it after a minute.
fn run_chromium(browser: &Path, profile: &Path, page: &Path, mode: &str) -> Output {
    let mut child = Command::new(browser)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--disable-extensions",
            "--no-first-run",
            "--no-default-browser-check",
            "--window-size=1600,1200",
            &format!("--user-data-dir={}", profile.display()),
            mode,
            &format!("file://{}", page.display()),
        ])
        .env("HOME", profile)
        .env("XDG_CONFIG_HOME", profile)
        .env("XDG_CACHE_HOME", profile)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start chromium");
    let started = Instant::now();
    loop {
        if child.try_wait().unwrap().is_some() {
            break;
        }
        if started.elapsed() > Duration::from_secs(90) {
            let _ = child.kill();
            let output = child.wait_with_output().unwrap();
            panic!(
                "chromium did not finish in 90 s:\n{}",
                String::from_utf8_lossy(&output.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    child.wait_with_output().unwrap()
}

/// Measures the drawing once the page has loaded: how many SVG texts have
/// a non-empty box, written into the DOM for `--dump-dom` to show.
const MEASURE: &str = r#"<script>
window.addEventListener("load", () => {
  const svg = document.querySelector("svg.meshward-graph");
  const texts = svg ? Array.from(svg.querySelectorAll("text")) : [];
  const drawn = texts.filter((t) => { const b = t.getBBox(); return b.width > 0 && b.height > 0; });
  const box = svg ? svg.getBoundingClientRect() : { width: 0, height: 0 };
  document.body.setAttribute("data-texts", String(texts.length));
  document.body.setAttribute("data-drawn", String(drawn.length));
  document.body.setAttribute("data-svg-size", Math.round(box.width) + "x" + Math.round(box.height));
});
</script>"#;

#[test]
fn the_html_graph_renders_in_headless_chromium() {
    let dir = std::env::temp_dir().join(format!("meshward-chromium-{}", std::process::id()));
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(dir.join("profile")).unwrap();
    let page = dir.join("shop.html");
    let output = Command::new(env!("CARGO_BIN_EXE_meshward"))
        .args(["graph", "examples/shop.policy", "--format", "html", "-o"])
        .arg(&page)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let html = fs::read_to_string(&page).unwrap();
    // A copy with a measuring script (the page itself has no scripts).
    let measured = dir.join("measured.html");
    fs::write(
        &measured,
        html.replace("</body>", &format!("{MEASURE}\n</body>")),
    )
    .unwrap();

    let browser = chromium();
    let dom = run_chromium(&browser, &dir.join("profile"), &measured, "--dump-dom");
    let dom_text = String::from_utf8_lossy(&dom.stdout);
    assert!(
        dom.status.success() && dom_text.contains("meshward-graph"),
        "chromium --dump-dom failed:\n{}\n{}",
        dom_text,
        String::from_utf8_lossy(&dom.stderr)
    );
    // The nodes a reader looks for, as SVG text.
    for label in [
        "group edge",
        "group support-tools",
        "any_authenticated",
        "spiffe://shop.example/ns/shop/sa/frontend",
        "spiffe://shop.example/ns/shop/**",
        "orders.read",
        "payments.refund",
        "ops.admin",
        "frontend-reads-orders",
        "no-admin-from-shop",
    ] {
        assert!(
            dom_text.contains(&format!(">{label}</text>")),
            "`{label}` is not an SVG text in the rendered page"
        );
    }
    for service in ["frontend", "orders", "payments", "ops"] {
        assert!(
            dom_text.contains(&format!(">{service}</text>")),
            "service `{service}`"
        );
    }
    // Every text was laid out with a real size.
    let attr = |name: &str| -> String {
        let start = dom_text
            .find(&format!("{name}=\""))
            .unwrap_or_else(|| panic!("no {name} in the dumped DOM: did the page load?"))
            + name.len()
            + 2;
        dom_text[start..].split('"').next().unwrap().to_owned()
    };
    let texts: usize = attr("data-texts").parse().unwrap();
    let drawn: usize = attr("data-drawn").parse().unwrap();
    assert!(texts > 30, "{texts} texts");
    assert_eq!(drawn, texts, "some SVG texts have no size");
    let size = attr("data-svg-size");
    let (w, h) = size.split_once('x').unwrap();
    assert!(
        w.parse::<u32>().unwrap() > 800 && h.parse::<u32>().unwrap() > 400,
        "{size}"
    );

    // And a screenshot of the page as shipped.
    let png = dir.join("shop.png");
    let shot = run_chromium(
        &browser,
        &dir.join("profile"),
        &page,
        &format!("--screenshot={}", png.display()),
    );
    assert!(
        shot.status.success(),
        "{}",
        String::from_utf8_lossy(&shot.stderr)
    );
    let bytes = fs::read(&png).unwrap();
    assert!(
        bytes.starts_with(b"\x89PNG") && bytes.len() > 20_000,
        "{} bytes",
        bytes.len()
    );
    let _ = fs::remove_dir_all(&dir);
}
