//! Opens a page in headless Chromium (Debian's `chromium`; scripts/install-test-deps.sh
//! installs it), takes a screenshot and collects the page's console messages.
//!
//! Console messages: with `--enable-logging=stderr --v=0` Chromium writes
//! every message of the page's console (console.error, uncaught exceptions)
//! to stderr as `...:CONSOLE:<line>] "<message>", source: <url> (<line>)`.
//! `console_messages_are_seen` proves, with a page that logs one, that this
//! Chromium still does, so "no console line" cannot pass by accident.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::common::run;

pub struct Opened {
    pub screenshot: Image,
    /// Lines of the page's console.
    pub console: Vec<String>,
}

/// An RGBA picture.
pub struct Image {
    pub width: u32,
    pub height: u32,
    pixels: Vec<u8>,
}

impl Image {
    pub fn rgb(&self, x: u32, y: u32) -> (u8, u8, u8) {
        let at = ((y * self.width + x) * 4) as usize;
        (self.pixels[at], self.pixels[at + 1], self.pixels[at + 2])
    }

    /// Pixels in rows `rows` whose colour is within 40 (per channel) of `color`.
    pub fn count_near(&self, rows: std::ops::Range<u32>, color: (u8, u8, u8)) -> usize {
        let near = |a: u8, b: u8| a.abs_diff(b) <= 40;
        rows.flat_map(|y| (0..self.width).map(move |x| (x, y)))
            .filter(|(x, y)| {
                let (r, g, b) = self.rgb(*x, *y);
                near(r, color.0) && near(g, color.1) && near(b, color.2)
            })
            .count()
    }

    /// Pixels in rows `rows` that are not (nearly) white.
    pub fn count_not_white(&self, rows: std::ops::Range<u32>) -> usize {
        rows.flat_map(|y| (0..self.width).map(move |x| (x, y)))
            .filter(|(x, y)| {
                let (r, g, b) = self.rgb(*x, *y);
                r.min(g).min(b) < 235
            })
            .count()
    }
}

/// Chromium: $CHROMIUM, else `chromium` or `chromium-browser` on PATH. Missing is a failure.
pub fn chromium() -> PathBuf {
    if let Some(path) = std::env::var_os("CHROMIUM") {
        return PathBuf::from(path);
    }
    ["chromium", "chromium-browser"]
        .into_iter()
        .find_map(|name| which::which(name).ok())
        .expect("chromium is missing: run scripts/install-test-deps.sh (Debian: apt-get install chromium)")
}

/// Opens `page` in a fresh headless Chromium with a `width` x `height` window,
/// saves the screenshot as `screenshot` and reads it back.
pub fn open(page: &Path, (width, height): (u32, u32), screenshot: &Path) -> Opened {
    let profile = tempfile::tempdir().expect("temp dir");
    let _ = std::fs::remove_file(screenshot);
    let mut command = Command::new(chromium());
    command
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--hide-scrollbars",
            "--enable-logging=stderr",
            "--v=0",
        ])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .arg(format!("--window-size={width},{height}"))
        .arg(format!("--screenshot={}", screenshot.display()))
        .arg(format!("file://{}", page.display()))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let finished = run(command, Duration::from_secs(60));
    assert_eq!(
        finished.code,
        Some(0),
        "chromium failed:\n{}\n{}",
        finished.stdout,
        finished.stderr
    );
    let console = finished
        .stderr
        .lines()
        .filter(|line| line.contains(":CONSOLE"))
        .map(str::to_owned)
        .collect();
    Opened {
        screenshot: decode(screenshot),
        console,
    }
}

fn decode(path: &Path) -> Image {
    let file = std::fs::File::open(path)
        .unwrap_or_else(|error| panic!("no screenshot at {}: {error}", path.display()));
    let mut decoder = png::Decoder::new(std::io::BufReader::new(file));
    decoder.set_transformations(
        png::Transformations::normalize_to_color8() | png::Transformations::ALPHA,
    );
    let mut reader = decoder.read_info().expect("a PNG");
    let mut pixels = vec![0; reader.output_buffer_size().expect("size")];
    let info = reader.next_frame(&mut pixels).expect("a frame");
    assert_eq!(info.color_type, png::ColorType::Rgba, "screenshot colours");
    pixels.truncate(info.buffer_size());
    Image {
        width: info.width,
        height: info.height,
        pixels,
    }
}
