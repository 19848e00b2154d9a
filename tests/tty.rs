//! `dlm run --visual` and `dlm chat` on a real pseudo-terminal (util-linux `script` makes it),
//! the output read back through a small terminal model: the visual redraws only its own rows
//! with lines that wrap, and chat's Ctrl-C stops an answer, not the session.

mod common;

use std::io::{Read, Write};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const COLS: usize = 40;
const ROWS: usize = 20;

/// The screen a VT100-style terminal of `COLS`x`ROWS` shows after `bytes`: printable
/// characters with deferred wrap, CR, LF (scrolling at the bottom), `ESC[nA`, `ESC[H`,
/// `ESC[J`, `ESC[2J`; other escapes are skipped.
fn screen(bytes: &[u8]) -> Vec<String> {
    let text = String::from_utf8_lossy(bytes);
    let mut grid = vec![vec![' '; COLS]; ROWS];
    let (mut row, mut col) = (0usize, 0usize);
    let mut chars = text.chars().peekable();
    let newline = |grid: &mut Vec<Vec<char>>, row: &mut usize| {
        if *row + 1 == ROWS {
            grid.remove(0);
            grid.push(vec![' '; COLS]);
        } else {
            *row += 1;
        }
    };
    while let Some(c) = chars.next() {
        match c {
            '\r' => col = 0,
            '\n' => {
                newline(&mut grid, &mut row);
                col = col.min(COLS - 1);
            }
            '\x1b' => {
                if chars.peek() != Some(&'[') {
                    chars.next();
                    continue;
                }
                chars.next();
                let mut arg = String::new();
                let mut fin = ' ';
                for c in chars.by_ref() {
                    if c.is_ascii_digit() || c == ';' || c == '?' {
                        arg.push(c);
                    } else {
                        fin = c;
                        break;
                    }
                }
                let n: usize = arg.parse().unwrap_or(1);
                match fin {
                    'A' => {
                        row = row.saturating_sub(n);
                        col = col.min(COLS - 1);
                    }
                    'H' => (row, col) = (0, 0),
                    'J' if arg == "2" => grid = vec![vec![' '; COLS]; ROWS],
                    'J' => {
                        grid[row][col.min(COLS)..].fill(' ');
                        for line in &mut grid[row + 1..] {
                            line.fill(' ');
                        }
                    }
                    _ => {}
                }
            }
            c if (c as u32) < 0x20 => {}
            c => {
                if col == COLS {
                    col = 0;
                    newline(&mut grid, &mut row);
                }
                grid[row][col] = c;
                col += 1;
            }
        }
    }
    grid.into_iter()
        .map(|r| r.into_iter().collect::<String>().trim_end().to_string())
        .collect()
}

/// Convert the demo model into `cache` off the terminal, so its progress lines do not scroll
/// the screen under test.
fn warm_cache(cache: &common::TempDir) {
    let st = Command::new(env!("CARGO_BIN_EXE_dlm"))
        .args(["run", "x", "-n", "1", "--steps", "1"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .env("DLM_CACHE", cache.path())
        .output()
        .expect("run dlm");
    assert!(
        st.status.success(),
        "{}",
        String::from_utf8_lossy(&st.stderr)
    );
}

/// `sh_command` on a pty of COLS x ROWS; its output is collected by a thread.
struct Tty {
    child: Child,
    stdin: Option<ChildStdin>,
    out: Arc<Mutex<Vec<u8>>>,
}

impl Tty {
    fn start(sh_command: &str, cache: &common::TempDir) -> Tty {
        let cmd = format!("stty cols {COLS} rows {ROWS}; {sh_command}");
        let mut child = Command::new("script")
            .args(["-q", "-e", "-c", &cmd, "/dev/null"])
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .env("DLM", env!("CARGO_BIN_EXE_dlm"))
            .env("DLM_CACHE", cache.path())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("start script");
        let mut stdout = child.stdout.take().unwrap();
        let out = Arc::new(Mutex::new(Vec::new()));
        let sink = out.clone();
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n) = stdout.read(&mut buf) {
                if n == 0 {
                    break;
                }
                sink.lock().unwrap().extend_from_slice(&buf[..n]);
            }
        });
        let stdin = child.stdin.take();
        Tty { child, stdin, out }
    }

    fn text(&self) -> String {
        String::from_utf8_lossy(&self.out.lock().unwrap()).into_owned()
    }

    /// Wait until the output contains `needle` `count` times.
    fn wait_for(&self, needle: &str, count: usize, secs: u64) {
        let deadline = Instant::now() + Duration::from_secs(secs);
        while self.text().matches(needle).count() < count {
            assert!(
                Instant::now() < deadline,
                "no {needle:?} (x{count}) in:\n{}",
                self.text()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn send(&mut self, bytes: &[u8]) {
        let w = self.stdin.as_mut().unwrap();
        w.write_all(bytes).unwrap();
        w.flush().unwrap();
    }

    /// Wait for the exit, at most `secs` seconds.
    fn wait_exit(&mut self, secs: u64) -> std::process::ExitStatus {
        let deadline = Instant::now() + Duration::from_secs(secs);
        loop {
            if let Some(st) = self.child.try_wait().unwrap() {
                return st;
            }
            assert!(Instant::now() < deadline, "did not exit:\n{}", self.text());
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Tty {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
#[cfg_attr(
    not(dlm_script),
    ignore = "needs util-linux `script` (a pseudo-terminal)"
)]
fn visual_redraws_only_its_own_rows_with_wrapped_lines() {
    let cache = common::TempDir::new("tty-visual");
    warm_cache(&cache);
    // A 64-token canvas: rows of masks wider than the 40-column terminal, so they wrap.
    let mut t = Tty::start(
        "printf 'KEEP ME\\n'; exec \"$DLM\" run 'Sort: 42 7 93 15' --visual -n 64 --block-length 64 --steps 16 --no-early-stop",
        &cache,
    );
    let st = t.wait_exit(120);
    let out = t.out.lock().unwrap().clone();
    let text = String::from_utf8_lossy(&out);
    assert!(st.success(), "{text}");
    assert!(
        !text.contains("\x1b[H") && !text.contains("\x1b[2J"),
        "cleared the screen"
    );
    let shown = screen(&out);
    assert_eq!(
        shown[0], "KEEP ME",
        "the line above the canvas was overwritten:\n{shown:#?}"
    );
    let headers: Vec<&String> = shown.iter().filter(|l| l.starts_with("step ")).collect();
    assert_eq!(headers.len(), 1, "frames left behind:\n{shown:#?}");
    assert!(headers[0].contains("step  16/16") && headers[0].contains("masks left    0"));
    assert!(!shown.iter().any(|l| l.contains('░')), "{shown:#?}");
    // Frames did wrap: at least one frame's canvas took more than one row.
    assert!(
        text.contains(&"░".repeat(COLS)),
        "no wrapped frame in the output"
    );
    assert!(shown.iter().any(|l| l == "7 15 42 93"), "{shown:#?}");
}

#[test]
#[cfg_attr(
    not(dlm_script),
    ignore = "needs util-linux `script` (a pseudo-terminal)"
)]
fn chat_commands_and_ctrl_c_stops_the_answer_not_the_session() {
    let cache = common::TempDir::new("tty-chat");
    warm_cache(&cache);
    let mut t = Tty::start("exec \"$DLM\" chat -c 80 -n 16 --steps 16 --seed 1", &cache);
    t.wait_for("> ", 1, 120);
    t.send(b"/help\n");
    t.wait_for("/reset", 1, 10);
    t.send(b"Sort: 42 7 93 15\n");
    t.wait_for("7 15 42 93", 1, 60);
    t.wait_for("forward passes]", 1, 60);
    // Two more turns overflow an 80-token context: the oldest turns go, with a notice.
    t.send(b"Sort: 5 3 9 1\n");
    t.wait_for("forward passes]", 2, 60);
    t.send(b"Sort: 8 6 7\n");
    t.wait_for("forward passes]", 3, 60);
    t.wait_for("dropped the oldest", 1, 5);
    t.send(b"/reset\n");
    t.wait_for("[conversation cleared]", 1, 10);
    t.send(b"/exit\n");
    let st = t.wait_exit(20);
    assert!(st.success(), "{}", t.text());

    // Ctrl-C during a long answer: stopped, and the next question is answered.
    let mut t = Tty::start(
        "exec \"$DLM\" chat -n 256 --block-length 256 --steps 256 --no-early-stop",
        &cache,
    );
    t.wait_for("> ", 1, 120);
    t.send(b"Sort: 3 1 2\n");
    std::thread::sleep(Duration::from_millis(800));
    t.send(b"\x03");
    t.wait_for("[stopped", 1, 30);
    t.wait_for("> ", 2, 10);
    t.send(b"/exit\n");
    let st = t.wait_exit(20);
    assert!(st.success(), "{}", t.text());
}

#[test]
#[cfg_attr(
    not(dlm_script),
    ignore = "needs util-linux `script` (a pseudo-terminal)"
)]
fn chat_edits_the_line_and_recalls_history() {
    let cache = common::TempDir::new("tty-edit");
    warm_cache(&cache);
    let mut t = Tty::start("exec \"$DLM\" chat -n 16 --steps 16 --seed 1", &cache);
    t.wait_for("> ", 1, 120);
    // Typed with a mistake and fixed: Backspace, Left, Home and Ctrl-E move and edit.
    // "ort: 9 7X" <BS> <Left><Left><Left> "1 " <Home> "S" <Ctrl-E> <Enter>: "Sort: 1 9 7".
    t.send(b"ort: 9 7X\x7f\x1b[D\x1b[D\x1b[D1 \x1b[HS\x05\r");
    t.wait_for("1 7 9", 1, 60);
    t.wait_for("forward passes", 1, 60);
    // Up recalls the line; Ctrl-U clears an unsent one first.
    t.send(b"junk\x15\x1b[A\r");
    t.wait_for("forward passes", 2, 60);
    // The editor drew the whole line once when fixed and once when recalled.
    assert!(
        t.text().matches("> Sort: 1 9 7").count() >= 2,
        "{}",
        t.text()
    );
    // Ctrl-C at the prompt is a notice; Ctrl-D ends the session.
    t.send(b"\x03");
    t.wait_for("Ctrl-C again", 1, 10);
    t.send(b"\x04");
    let st = t.wait_exit(20);
    assert!(st.success(), "{}", t.text());
}
