//! The C ABI end to end: the header against the built static library (symbols, constants,
//! struct layout), the C example compiled with `cc` and run (also under valgrind), and every
//! error path of the ABI called from Rust.

mod common;

use dlm::ffi::*;
use dlm_runtime::Engine;
use std::collections::BTreeSet;
use std::ffi::{CStr, CString, c_char, c_int, c_void};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::ptr::{null, null_mut};
use std::sync::{Mutex, OnceLock};

/// Taken by the tests that free handles and by those that open models, so that the
/// use-after-free probe cannot see its freed memory reused by another test's handle.
static SERIAL: Mutex<()> = Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// `llada-tiny` converted once per test process (f32), or `None` without `../shared`.
fn model_path() -> Option<PathBuf> {
    static PATH: OnceLock<Option<PathBuf>> = OnceLock::new();
    PATH.get_or_init(|| {
        let reference = common::reference_dir()?;
        // Kept for the whole process (a static is never dropped), so it lives in Cargo's
        // per-target scratch folder rather than leaking into /tmp; each run rewrites it.
        let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("c-abi");
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("create the c-abi scratch folder");
        Some(common::convert_reference(
            &reference,
            "llada-tiny",
            "f32",
            &dir,
        ))
    })
    .clone()
}

fn cstring(p: &Path) -> CString {
    CString::new(p.to_str().expect("utf-8 path")).expect("no NUL")
}

fn last_error() -> String {
    // SAFETY: dlm_last_error returns a valid NUL-terminated string.
    unsafe { CStr::from_ptr(dlm_last_error()) }
        .to_string_lossy()
        .into_owned()
}

/// Open a model through the ABI.
fn open(path: &Path) -> *mut dlm_model {
    let mut m = null_mut();
    // SAFETY: valid string and out pointer.
    let st = unsafe { dlm_model_open(cstring(path).as_ptr(), &mut m) };
    assert_eq!(st, DLM_OK, "{}", last_error());
    assert!(!m.is_null());
    m
}

fn new_session(m: *const dlm_model) -> *mut dlm_session {
    let mut s = null_mut();
    // SAFETY: live model, valid out pointer.
    assert_eq!(unsafe { dlm_session_new(m, &mut s) }, DLM_OK);
    s
}

fn defaults(m: *const dlm_model) -> dlm_params {
    let mut p = std::mem::MaybeUninit::<dlm_params>::uninit();
    // SAFETY: live model; the out pointer is writable for the struct's size.
    let st = unsafe { dlm_params_default(m, p.as_mut_ptr(), size_of::<dlm_params>()) };
    assert_eq!(st, DLM_OK);
    // SAFETY: filled on DLM_OK.
    unsafe { p.assume_init() }
}

/// Small, fast parameters: 8 tokens in 8 steps, one block.
fn small(m: *const dlm_model) -> dlm_params {
    let mut p = defaults(m);
    p.gen_length = 8;
    p.steps = 8;
    p.block_length = 0;
    p
}

fn text_of(s: *const dlm_session) -> String {
    // SAFETY: live session; the pointer is checked before reading.
    let p = unsafe { dlm_session_text(s) };
    assert!(!p.is_null(), "{}", last_error());
    // SAFETY: non-null NUL-terminated string owned by the session.
    unsafe { CStr::from_ptr(p) }.to_str().unwrap().to_owned()
}

fn output_ids(s: *const dlm_session) -> Vec<u32> {
    let mut p = null();
    let mut n = 0;
    // SAFETY: live session, valid out pointers.
    assert_eq!(unsafe { dlm_session_output_ids(s, &mut p, &mut n) }, DLM_OK);
    if n == 0 {
        assert!(p.is_null());
        return Vec::new();
    }
    // SAFETY: the session's canvas of n ids.
    unsafe { std::slice::from_raw_parts(p, n) }.to_vec()
}

// ---------------------------------------------------------------------------------------
// Header against library.

/// `target/<profile>` of this test run: the folder of the `dlm` binary.
fn profile_dir() -> PathBuf {
    Path::new(env!("CARGO_BIN_EXE_dlm"))
        .parent()
        .expect("binary folder")
        .to_path_buf()
}

/// The static library beside the binary for this test run. `cargo test` builds the package's
/// lib only as the rlib the tests link, so `libdlm.a` there may be missing or older than the
/// sources: `cargo build --lib` (a no-op when it is fresh, and reusing every dependency already
/// built) brings it up to date once per test process.
fn static_lib() -> PathBuf {
    static BUILT: OnceLock<PathBuf> = OnceLock::new();
    BUILT
        .get_or_init(|| {
            let dir = profile_dir();
            let target_dir = dir.parent().expect("target dir");
            let mut cmd = Command::new(env!("CARGO"));
            // `--test c_abi` (fresh: it is this test) makes cargo resolve features with the
            // dev-dependencies, as `cargo test` did; without it every dependency whose
            // features differ is built again (3 of the suite's 13 minutes on 2 cores).
            cmd.args(["build", "--lib", "--test", "c_abi", "--target-dir"])
                .arg(target_dir);
            if dir.file_name().is_some_and(|n| n == "release") {
                cmd.arg("--release");
            }
            let st = cmd
                .current_dir(root())
                .status()
                .expect("run cargo build --lib");
            assert!(st.success(), "cargo build --lib failed");
            let lib = dir.join("libdlm.a");
            assert!(lib.exists(), "no static library at {}", lib.display());
            lib
        })
        .clone()
}

/// The header with its comments removed.
fn header() -> String {
    let text = std::fs::read_to_string(root().join("include/dlm.h")).expect("read dlm.h");
    let mut out = String::new();
    let mut rest = text.as_str();
    while let Some(i) = rest.find("/*") {
        out.push_str(&rest[..i]);
        let j = rest[i..].find("*/").expect("closed comment");
        rest = &rest[i + j + 2..];
    }
    out.push_str(rest);
    out
}

fn is_ident(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_'
}

/// Names `dlm_*` directly followed by `(`: the functions the header declares.
fn header_functions(h: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for (i, _) in h.match_indices("dlm_") {
        if i > 0 && h[..i].chars().next_back().is_some_and(is_ident) {
            continue;
        }
        let name: String = h[i..].chars().take_while(|&c| is_ident(c)).collect();
        if h[i + name.len()..].trim_start().starts_with('(') {
            out.insert(name);
        }
    }
    out
}

/// `NAME = value` enumerators of the header.
fn header_constants(h: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for (i, _) in h.match_indices("DLM_") {
        let name: String = h[i..].chars().take_while(|&c| is_ident(c)).collect();
        if h[i + name.len()..].trim_start().starts_with('=') {
            out.insert(name);
        }
    }
    out
}

/// The field names of `dlm_params` in the header, in order.
fn header_params_fields(h: &str) -> Vec<String> {
    let start = h
        .find("typedef struct dlm_params {")
        .expect("dlm_params in header");
    let body = &h[start..];
    let body = &body[body.find('{').unwrap() + 1..body.find('}').unwrap()];
    body.split(';')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|decl| {
            decl.rsplit(|c: char| !is_ident(c))
                .next()
                .unwrap()
                .to_string()
        })
        .collect()
}

/// Rust's `dlm_params`: field names with offsets, in order, and the size.
fn rust_params_layout() -> (Vec<(&'static str, usize)>, usize) {
    use std::mem::offset_of;
    let fields = vec![
        ("struct_size", offset_of!(dlm_params, struct_size)),
        ("version", offset_of!(dlm_params, version)),
        ("algorithm", offset_of!(dlm_params, algorithm)),
        ("cache", offset_of!(dlm_params, cache)),
        ("steps", offset_of!(dlm_params, steps)),
        ("gen_length", offset_of!(dlm_params, gen_length)),
        ("block_length", offset_of!(dlm_params, block_length)),
        ("top_k", offset_of!(dlm_params, top_k)),
        ("threshold", offset_of!(dlm_params, threshold)),
        ("factor", offset_of!(dlm_params, factor)),
        ("temperature", offset_of!(dlm_params, temperature)),
        ("top_p", offset_of!(dlm_params, top_p)),
        ("cfg_scale", offset_of!(dlm_params, cfg_scale)),
        ("alg_temp", offset_of!(dlm_params, alg_temp)),
        ("eps", offset_of!(dlm_params, eps)),
        ("seed", offset_of!(dlm_params, seed)),
        ("stop_early", offset_of!(dlm_params, stop_early)),
        ("chat", offset_of!(dlm_params, chat)),
        ("schedule", offset_of!(dlm_params, schedule)),
        ("elastic_window", offset_of!(dlm_params, elastic_window)),
        ("elastic_gamma", offset_of!(dlm_params, elastic_gamma)),
        ("elastic_track", offset_of!(dlm_params, elastic_track)),
        (
            "elastic_block_cache",
            offset_of!(dlm_params, elastic_block_cache),
        ),
        ("min_per_step", offset_of!(dlm_params, min_per_step)),
        ("reserved0", offset_of!(dlm_params, reserved0)),
        (
            "elastic_prefix_refresh",
            offset_of!(dlm_params, elastic_prefix_refresh),
        ),
    ];
    (fields, size_of::<dlm_params>())
}

fn cc_available() -> bool {
    let ok = Command::new("cc").arg("--version").output().is_ok();
    if !ok {
        println!("skipped: no C compiler (cc)");
    }
    ok
}

/// Compile `sources` against the header and the static library into `out`.
fn compile(sources: &[&Path], out: &Path) {
    let lib = static_lib();
    let output = Command::new("cc")
        .args(["-std=c11", "-Wall", "-Wextra", "-Werror", "-g", "-O1"])
        .arg("-I")
        .arg(root().join("include"))
        .args(sources)
        .arg(&lib)
        .args(["-lpthread", "-ldl", "-lm", "-o"])
        .arg(out)
        .output()
        .expect("run cc");
    assert!(
        output.status.success(),
        "cc failed:\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
}

/// The `dlm_*` functions dlm.h declares.
fn declared_functions() -> BTreeSet<String> {
    let declared = header_functions(&header());
    assert!(
        declared.contains("dlm_generate") && declared.len() >= 15,
        "{declared:?}"
    );
    declared
}

/// Asserts that `lib` exports exactly the functions dlm.h declares.
fn assert_exports_match_header(lib: &Path, exported: &BTreeSet<String>) {
    let declared = declared_functions();
    let name = lib.file_name().unwrap_or_default().to_string_lossy();
    let missing: Vec<_> = declared.difference(exported).collect();
    let undeclared: Vec<_> = exported.difference(&declared).collect();
    assert!(
        missing.is_empty(),
        "declared in dlm.h but not in {name}: {missing:?}"
    );
    assert!(
        undeclared.is_empty(),
        "exported by {name} but not in dlm.h: {undeclared:?}"
    );
}

#[test]
fn header_functions_match_shared_library_symbols() {
    // Dynamic symbols are machine code in every profile (thin LTO included).
    let so = static_lib().with_file_name(format!(
        "{}dlm{}",
        std::env::consts::DLL_PREFIX,
        std::env::consts::DLL_SUFFIX
    ));
    let exported = exported_functions(&so, true).expect("nm -D on the shared library");
    assert_exports_match_header(&so, &exported);
}

#[test]
#[cfg_attr(
    not(debug_assertions),
    ignore = "release builds libdlm.a as thin-LTO bitcode that nm cannot read; \
              header_functions_match_shared_library_symbols checks the same list"
)]
fn header_functions_match_static_library_symbols() {
    let lib = static_lib();
    let exported = exported_functions(&lib, false).expect("nm on libdlm.a");
    assert_exports_match_header(&lib, &exported);
}

/// The `dlm_*` functions `lib` defines, by `nm` (`-D`: the dynamic table of a shared
/// library); `None` when `nm` fails.
fn exported_functions(lib: &Path, dynamic: bool) -> Option<BTreeSet<String>> {
    let mut cmd = Command::new("nm");
    cmd.args(["-g", "--defined-only"]);
    if dynamic {
        cmd.arg("-D");
    }
    let out = cmd.arg(lib).output().expect("run nm");
    out.status.success().then(|| {
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(|l| {
                let mut it = l.split_whitespace();
                let (_, kind, name) = (it.next()?, it.next()?, it.next()?);
                (kind == "T" && name.starts_with("dlm_")).then(|| name.to_string())
            })
            .collect()
    })
}

#[test]
#[cfg_attr(not(dlm_cc), ignore = "needs a C compiler (cc)")]
fn header_constants_and_params_layout_match_rust() {
    let h = header();
    let rust: Vec<(&str, c_int)> = STATUS_CODES.iter().chain(ENUM_CONSTANTS).copied().collect();
    let names: BTreeSet<String> = rust.iter().map(|(n, _)| n.to_string()).collect();
    assert_eq!(header_constants(&h), names, "enumerators of dlm.h vs Rust");
    let (fields, size) = rust_params_layout();
    let header_fields = header_params_fields(&h);
    let rust_fields: Vec<String> = fields.iter().map(|(n, _)| n.to_string()).collect();
    assert_eq!(
        header_fields, rust_fields,
        "dlm_params fields (order matters)"
    );
    if !cc_available() {
        return;
    }
    // A C program printing what the C compiler makes of the header.
    let mut c = String::from(
        "#include <stdio.h>\n#include <stddef.h>\n#include \"dlm.h\"\nint main(void) {\n",
    );
    for (n, _) in &rust {
        c.push_str(&format!("  printf(\"{n} %d\\n\", (int){n});\n"));
    }
    for (f, _) in &fields {
        c.push_str(&format!(
            "  printf(\"offsetof.{f} %zu\\n\", offsetof(dlm_params, {f}));\n"
        ));
    }
    c.push_str("  printf(\"sizeof %zu\\n\", sizeof(dlm_params));\n");
    c.push_str("  printf(\"DLM_MAX_IDS %zu\\n\", DLM_MAX_IDS);\n  return 0;\n}\n");
    let dir = common::temp_dir("c-layout");
    let src = dir.join("layout.c");
    std::fs::write(&src, c).unwrap();
    let exe = dir.join("layout");
    compile(&[&src], &exe);
    let out = Command::new(&exe).output().expect("run layout");
    assert!(out.status.success());
    let mut expected = String::new();
    for (n, v) in &rust {
        expected.push_str(&format!("{n} {v}\n"));
    }
    for (f, off) in &fields {
        expected.push_str(&format!("offsetof.{f} {off}\n"));
    }
    expected.push_str(&format!("sizeof {size}\nDLM_MAX_IDS {DLM_MAX_IDS}\n"));
    assert_eq!(String::from_utf8_lossy(&out.stdout), expected);
}

// ---------------------------------------------------------------------------------------
// The C example.

/// What the runtime itself answers for the example's request.
fn expected_answer(path: &Path, prompt: &str, gen_length: usize) -> (String, usize) {
    use dlm_runtime::chat::Role;
    let engine = Engine::open(path).unwrap();
    let mut p = engine.defaults().clone();
    p.gen_length = gen_length;
    p.steps = gen_length;
    p.block_length = None;
    let ids = match engine.chat() {
        Some(_) => engine.chat_ids(&[(Role::User, prompt)]).unwrap(),
        None => engine.tokenizer().encode(prompt),
    };
    let out = engine.generate(&ids, &p, &mut |_| true).unwrap();
    (engine.answer_text(&out).unwrap(), out.steps)
}

#[test]
#[cfg_attr(not(dlm_shared), ignore = "needs ../shared/reference")]
#[cfg_attr(not(dlm_cc), ignore = "needs a C compiler (cc)")]
fn c_example_runs_and_is_clean_under_valgrind() {
    let Some(model) = model_path() else { return };
    if !cc_available() {
        return;
    }
    let dir = common::temp_dir("c-example");
    let exe = dir.join("generate");
    compile(&[&root().join("examples/c/generate.c")], &exe);
    let prompt = "Sort: 5 3 9 1";
    // Runs the example (under `wrapper` when given) for `gen_length` tokens and checks the
    // answer against the runtime's and the progress lines against the steps run.
    let run_and_check = |wrapper: &[&str], gen_length: usize| {
        let (answer, steps) = expected_answer(&model, prompt, gen_length);
        let mut cmd = match wrapper.split_first() {
            Some((w, rest)) => {
                let mut c = Command::new(w);
                c.args(rest).arg(&exe);
                c
            }
            None => Command::new(&exe),
        };
        // Under valgrind, which runs threads one at a time, idle pool threads only cost time.
        cmd.env("RAYON_NUM_THREADS", "1");
        let out = cmd
            .arg(&model)
            .arg(prompt)
            .arg(gen_length.to_string())
            .output()
            .expect("run example");
        let stdout = String::from_utf8_lossy(&out.stdout);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "example failed:\n{stdout}\n{stderr}");
        assert_eq!(stdout.strip_suffix('\n'), Some(answer.as_str()));
        let of = format!(" masks left of {gen_length}");
        let steps_seen: Vec<(usize, usize)> = stderr
            .lines()
            .filter_map(|l| {
                let rest = l.strip_prefix("step ")?;
                let (step, rest) = rest.split_once(": ")?;
                let masks = rest.strip_suffix(of.as_str())?;
                Some((step.parse().ok()?, masks.parse().ok()?))
            })
            .collect();
        assert_eq!(steps_seen.len(), steps, "{stderr}");
        for (i, &(step, masks)) in steps_seen.iter().enumerate() {
            assert_eq!(step, i);
            assert!(masks < gen_length);
            if i > 0 {
                assert!(masks <= steps_seen[i - 1].1, "masks went up: {stderr}");
            }
        }
        assert_eq!(steps_seen.last().map(|s| s.1), Some(0), "{stderr}");
        assert!(stderr.contains("forward passes]"), "{stderr}");
    };
    run_and_check(&[], 16);

    if Command::new("valgrind").arg("--version").output().is_err() {
        println!("note: valgrind not found; the memory check of the C example was skipped");
        return;
    }
    // Leaks that count: definite and indirect. The global rayon pool's threads live until
    // exit, so their thread-local blocks are "possibly lost" by design.
    run_and_check(
        &[
            "valgrind",
            "--error-exitcode=1",
            "--leak-check=full",
            "--errors-for-leak-kinds=definite,indirect",
            "-q",
        ],
        4,
    );
}

// ---------------------------------------------------------------------------------------
// Error paths, from Rust.

#[test]
fn version_and_empty_last_error() {
    // SAFETY: a static NUL-terminated string.
    let v = unsafe { CStr::from_ptr(dlm_version()) };
    assert_eq!(v.to_str().unwrap(), env!("CARGO_PKG_VERSION"));
    // A fresh thread has no error yet.
    std::thread::spawn(|| assert_eq!(last_error(), ""))
        .join()
        .unwrap();
}

#[test]
fn model_open_errors() {
    // SAFETY: every pointer is valid or deliberately NULL; no model is opened.
    unsafe {
        let mut m = std::ptr::dangling_mut::<dlm_model>();
        assert_eq!(dlm_model_open(null(), &mut m), DLM_ERR_NULL);
        assert!(m.is_null(), "out is cleared on failure");
        assert!(last_error().contains("path"), "{}", last_error());
        let c = CString::new("x.dlm").unwrap();
        assert_eq!(dlm_model_open(c.as_ptr(), null_mut()), DLM_ERR_NULL);
        let empty = CString::new("").unwrap();
        assert_eq!(dlm_model_open(empty.as_ptr(), &mut m), DLM_ERR_INVALID_ARG);
        let dir = common::temp_dir("c-abi-open");
        let missing = dir.join("missing.dlm");
        assert_eq!(
            dlm_model_open(cstring(&missing).as_ptr(), &mut m),
            DLM_ERR_IO
        );
        assert!(last_error().contains("missing.dlm"), "{}", last_error());
        let junk = dir.join("junk.dlm");
        std::fs::write(&junk, vec![7u8; 4096]).unwrap();
        assert_eq!(
            dlm_model_open(cstring(&junk).as_ptr(), &mut m),
            DLM_ERR_FORMAT
        );
        assert!(m.is_null());
        // A non-UTF-8 path is a path like any other on Unix: it does not exist.
        let bytes = CString::new(vec![b'/', 0xff, b'x']).unwrap();
        assert_eq!(dlm_model_open(bytes.as_ptr(), &mut m), DLM_ERR_IO);
    }
}

#[test]
fn model_open_on_names_the_device() {
    // SAFETY: every pointer is valid or deliberately NULL.
    unsafe {
        let mut m = std::ptr::dangling_mut::<dlm_model>();
        let dir = common::temp_dir("c-abi-open-on");
        let missing = cstring(&dir.join("missing.dlm"));
        // NULL and "cpu" are the CPU: the missing file is what fails.
        assert_eq!(
            dlm_model_open_on(missing.as_ptr(), null(), &mut m),
            DLM_ERR_IO
        );
        assert!(m.is_null());
        let cpu = CString::new("cpu").unwrap();
        assert_eq!(
            dlm_model_open_on(missing.as_ptr(), cpu.as_ptr(), &mut m),
            DLM_ERR_IO
        );
        let tpu = CString::new("tpu").unwrap();
        assert_ne!(
            dlm_model_open_on(missing.as_ptr(), tpu.as_ptr(), &mut m),
            DLM_OK
        );
        assert!(last_error().contains("tpu"), "{}", last_error());
        if cfg!(not(feature = "cuda")) {
            let cuda = CString::new("cuda").unwrap();
            assert_ne!(
                dlm_model_open_on(missing.as_ptr(), cuda.as_ptr(), &mut m),
                DLM_OK
            );
            assert!(last_error().contains("without CUDA"), "{}", last_error());
        }
        assert!(m.is_null());
    }
}

#[test]
fn last_error_is_per_thread() {
    let mut m = null_mut();
    // SAFETY: NULL path, valid out.
    assert_eq!(unsafe { dlm_model_open(null(), &mut m) }, DLM_ERR_NULL);
    let here = last_error();
    std::thread::spawn(|| {
        let mut n = 0;
        // SAFETY: NULL model, rejected before any use.
        let st = unsafe { dlm_tokenize(null(), null(), null_mut(), 0, &mut n) };
        assert_eq!(st, DLM_ERR_NULL);
        assert!(last_error().contains("model"));
    })
    .join()
    .unwrap();
    assert_eq!(last_error(), here);
}

#[test]
#[cfg_attr(not(dlm_shared), ignore = "needs ../shared/reference")]
fn tokenize_and_detokenize_errors_and_round_trip() {
    let Some(path) = model_path() else { return };
    let _g = serial();
    let m = open(&path);
    let text = CString::new("Hello world, 123").unwrap();
    let mut n = 0usize;
    // SAFETY: every pointer is valid or deliberately NULL, and `m` is live.
    unsafe {
        assert_eq!(
            dlm_tokenize(null(), text.as_ptr(), null_mut(), 0, &mut n),
            DLM_ERR_NULL
        );
        assert_eq!(dlm_tokenize(m, null(), null_mut(), 0, &mut n), DLM_ERR_NULL);
        assert_eq!(
            dlm_tokenize(m, text.as_ptr(), null_mut(), 0, null_mut()),
            DLM_ERR_NULL
        );
        let bad = [b'a', 0xc3, 0x28, 0];
        assert_eq!(
            dlm_tokenize(m, bad.as_ptr().cast(), null_mut(), 0, &mut n),
            DLM_ERR_UTF8
        );
        assert!(last_error().contains("UTF-8"));
        // Size query, then too small, then exact.
        assert_eq!(
            dlm_tokenize(m, text.as_ptr(), null_mut(), 0, &mut n),
            DLM_ERR_BUFFER_TOO_SMALL
        );
        assert!(n > 1);
        let mut ids = vec![0u32; n];
        let mut n2 = 0;
        assert_eq!(
            dlm_tokenize(m, text.as_ptr(), ids.as_mut_ptr(), n - 1, &mut n2),
            DLM_ERR_BUFFER_TOO_SMALL
        );
        assert_eq!(n2, n);
        assert!(
            ids.iter().all(|&i| i == 0),
            "nothing written when too small"
        );
        assert_eq!(
            dlm_tokenize(m, text.as_ptr(), null_mut(), n, &mut n2),
            DLM_ERR_NULL
        );
        assert_eq!(
            dlm_tokenize(m, text.as_ptr(), ids.as_mut_ptr(), n, &mut n2),
            DLM_OK
        );
        let engine = Engine::open(&path).unwrap();
        assert_eq!(ids, engine.tokenizer().encode("Hello world, 123"));
        // Empty text: zero ids, NULL buffer fine.
        let empty = CString::new("").unwrap();
        assert_eq!(
            dlm_tokenize(m, empty.as_ptr(), null_mut(), 0, &mut n2),
            DLM_OK
        );
        assert_eq!(n2, 0);

        // Detokenize.
        let mut len = 0usize;
        assert_eq!(
            dlm_detokenize(m, ids.as_ptr(), ids.len(), null_mut(), 0, &mut len),
            DLM_ERR_BUFFER_TOO_SMALL
        );
        assert_eq!(len, "Hello world, 123".len());
        let mut buf = vec![b'#' as c_char; len];
        assert_eq!(
            dlm_detokenize(m, ids.as_ptr(), ids.len(), buf.as_mut_ptr(), len, &mut len),
            DLM_ERR_BUFFER_TOO_SMALL,
            "the NUL needs room too"
        );
        assert!(buf.iter().all(|&b| b == b'#' as c_char));
        let mut buf = vec![0 as c_char; len + 1];
        assert_eq!(
            dlm_detokenize(
                m,
                ids.as_ptr(),
                ids.len(),
                buf.as_mut_ptr(),
                len + 1,
                &mut len
            ),
            DLM_OK
        );
        assert_eq!(
            CStr::from_ptr(buf.as_ptr()).to_str().unwrap(),
            "Hello world, 123"
        );
        assert_eq!(
            dlm_detokenize(null(), ids.as_ptr(), 1, buf.as_mut_ptr(), 8, &mut len),
            DLM_ERR_NULL
        );
        assert_eq!(
            dlm_detokenize(m, null(), 1, buf.as_mut_ptr(), 8, &mut len),
            DLM_ERR_NULL
        );
        assert_eq!(
            dlm_detokenize(m, ids.as_ptr(), 1, buf.as_mut_ptr(), 8, null_mut()),
            DLM_ERR_NULL
        );
        assert_eq!(
            dlm_detokenize(
                m,
                ids.as_ptr(),
                DLM_MAX_IDS + 1,
                buf.as_mut_ptr(),
                8,
                &mut len
            ),
            DLM_ERR_INVALID_ARG
        );
        assert!(last_error().contains("limit"), "{}", last_error());
        let unknown = [u32::MAX];
        assert_eq!(
            dlm_detokenize(m, unknown.as_ptr(), 1, buf.as_mut_ptr(), 8, &mut len),
            DLM_ERR_TOKENIZER
        );
        // Zero ids: the empty string.
        assert_eq!(
            dlm_detokenize(m, null(), 0, buf.as_mut_ptr(), 1, &mut len),
            DLM_OK
        );
        assert_eq!((len, buf[0]), (0, 0));
        dlm_model_free(m);
    }
}

#[test]
#[cfg_attr(not(dlm_shared), ignore = "needs ../shared/reference")]
fn params_default_matches_the_engine() {
    let Some(path) = model_path() else { return };
    let _g = serial();
    let m = open(&path);
    let p = defaults(m);
    let engine = Engine::open(&path).unwrap();
    let d = engine.defaults();
    assert_eq!(p.steps as usize, d.steps);
    assert_eq!(p.gen_length as usize, d.gen_length);
    assert_eq!(p.block_length as usize, d.block_length.unwrap_or(0));
    assert_eq!(p.eps, d.eps);
    assert_eq!(p.stop_early != 0, d.stop_early);
    assert_eq!(p.chat != 0, engine.chat().is_some());
    assert_eq!(p.algorithm, DLM_ALG_LOW_CONFIDENCE);
    assert_eq!(p.cache, DLM_CACHE_NONE);
    // SAFETY: NULL arguments are rejected before any use.
    unsafe {
        let size = size_of::<dlm_params>();
        assert_eq!(dlm_params_default(m, null_mut(), size), DLM_ERR_NULL);
        let mut q = p;
        assert_eq!(dlm_params_default(null(), &mut q, size), DLM_ERR_NULL);
        // A size below version 2's layout is refused; a larger one (a newer caller) is
        // filled up to what this library knows.
        assert_eq!(dlm_params_default(m, &mut q, 8), DLM_ERR_INVALID_ARG);
        assert_eq!(q.struct_size as usize, size);
        let mut big = [0u64; 32];
        let bp = big.as_mut_ptr().cast::<dlm_params>();
        assert_eq!(dlm_params_default(m, bp, size_of_val(&big)), DLM_OK);
        assert_eq!((*bp).struct_size as usize, size);
        assert_eq!((*bp).version as c_int, DLM_PARAMS_VERSION);
        assert_eq!(
            big[size / 8..],
            [0u64; 32][size / 8..],
            "nothing written past the struct"
        );
        dlm_model_free(m);
    }
}

struct Probe {
    steps: Vec<(usize, usize)>,
    cancel_at: Option<usize>,
    session: *mut dlm_session,
    reentrant: Vec<c_int>,
}

unsafe extern "C" fn probe_cb(
    canvas: *const u32,
    len: usize,
    prompt_len: usize,
    masks_left: usize,
    step: usize,
    user: *mut c_void,
) -> c_int {
    // SAFETY: `user` is the test's &mut Probe, alive for the call.
    let probe = unsafe { &mut *user.cast::<Probe>() };
    assert!(!canvas.is_null() && len > prompt_len);
    probe.steps.push((step, masks_left));
    if !probe.session.is_null() {
        let s = probe.session;
        // SAFETY: a live session, busy during its own callback.
        unsafe {
            probe.reentrant.push(dlm_generate_ids(
                s,
                canvas,
                prompt_len,
                null(),
                None,
                null_mut(),
            ));
            probe.reentrant.push(if dlm_session_text(s).is_null() {
                DLM_ERR_BUSY
            } else {
                DLM_OK
            });
            dlm_session_free(s);
            probe.reentrant.push(if last_error().contains("in use") {
                DLM_ERR_BUSY
            } else {
                DLM_OK
            });
        }
    }
    c_int::from(probe.cancel_at == Some(step))
}

#[test]
#[cfg_attr(not(dlm_shared), ignore = "needs ../shared/reference")]
fn generate_success_cancel_and_errors() {
    let Some(path) = model_path() else { return };
    let _g = serial();
    let m = open(&path);
    let s = new_session(m);
    let prompt = CString::new("Sort: 5 3 9 1").unwrap();
    let p = small(m);
    // SAFETY: handles are live, pointers valid or deliberately NULL/bad.
    unsafe {
        // Nothing generated yet.
        assert_eq!(text_of(s), "");
        assert!(output_ids(s).is_empty());
        let mut nfe = 99;
        assert_eq!(dlm_session_nfe(s, &mut nfe), DLM_OK);
        assert_eq!(nfe, 0);

        let mut probe = Probe {
            steps: Vec::new(),
            cancel_at: None,
            session: null_mut(),
            reentrant: Vec::new(),
        };
        let user = (&raw mut probe).cast::<c_void>();
        assert_eq!(
            dlm_generate(s, prompt.as_ptr(), &p, Some(probe_cb), user),
            DLM_OK
        );
        let engine = Engine::open(&path).unwrap();
        let mut d = engine.defaults().clone();
        d.gen_length = 8;
        d.steps = 8;
        d.block_length = None;
        let ids = engine
            .chat_ids(&[(dlm_runtime::chat::Role::User, "Sort: 5 3 9 1")])
            .unwrap();
        let want = engine.generate(&ids, &d, &mut |_| true).unwrap();
        assert_eq!(output_ids(s), want.canvas);
        assert_eq!(text_of(s), engine.answer_text(&want).unwrap());
        assert_eq!(probe.steps.len(), want.steps);
        assert_eq!(dlm_session_nfe(s, &mut nfe), DLM_OK);
        assert_eq!(nfe, want.nfe);
        let mut pl = 0;
        assert_eq!(dlm_session_prompt_len(s, &mut pl), DLM_OK);
        assert_eq!(pl, ids.len());

        // The same from ids, and with params NULL (the model's defaults, gen_length 32+).
        assert_eq!(
            dlm_generate_ids(s, ids.as_ptr(), ids.len(), &p, None, null_mut()),
            DLM_OK
        );
        assert_eq!(output_ids(s), want.canvas);
        assert_eq!(
            dlm_generate_ids(s, ids.as_ptr(), ids.len(), null(), None, null_mut()),
            DLM_OK
        );
        assert_eq!(
            output_ids(s).len(),
            ids.len() + engine.defaults().gen_length
        );

        // Cancel at step 2: DLM_CANCELLED and no output.
        probe.steps.clear();
        probe.cancel_at = Some(2);
        assert_eq!(
            dlm_generate(s, prompt.as_ptr(), &p, Some(probe_cb), user),
            DLM_CANCELLED
        );
        assert_eq!(probe.steps.len(), 3);
        assert_eq!(text_of(s), "");
        assert!(output_ids(s).is_empty());
        assert!(last_error().contains("cancel"), "{}", last_error());

        // Re-entry from the callback: busy, and free is refused; the session survives.
        probe.cancel_at = Some(0);
        probe.session = s;
        assert_eq!(
            dlm_generate(s, prompt.as_ptr(), &p, Some(probe_cb), user),
            DLM_CANCELLED
        );
        assert_eq!(probe.reentrant, vec![DLM_ERR_BUSY; 3]);
        assert_eq!(
            dlm_generate(s, prompt.as_ptr(), &p, None, null_mut()),
            DLM_OK
        );

        // Argument errors.
        assert_eq!(
            dlm_generate(null_mut(), prompt.as_ptr(), &p, None, null_mut()),
            DLM_ERR_NULL
        );
        assert_eq!(dlm_generate(s, null(), &p, None, null_mut()), DLM_ERR_NULL);
        let bad = [0xffu8, 0];
        assert_eq!(
            dlm_generate(s, bad.as_ptr().cast(), &p, None, null_mut()),
            DLM_ERR_UTF8
        );
        let mut q = p;
        q.algorithm = 42;
        assert_eq!(
            dlm_generate(s, prompt.as_ptr(), &q, None, null_mut()),
            DLM_ERR_INVALID_ARG
        );
        assert!(last_error().contains("algorithm"), "{}", last_error());
        let mut q = p;
        q.cache = 7;
        assert_eq!(
            dlm_generate(s, prompt.as_ptr(), &q, None, null_mut()),
            DLM_ERR_INVALID_ARG
        );
        let mut q = p;
        q.gen_length = 0;
        assert_eq!(
            dlm_generate(s, prompt.as_ptr(), &q, None, null_mut()),
            DLM_ERR_INVALID_ARG
        );
        let mut q = p;
        q.block_length = 3;
        assert_eq!(
            dlm_generate(s, prompt.as_ptr(), &q, None, null_mut()),
            DLM_ERR_INVALID_ARG
        );
        assert!(last_error().contains("block_length"), "{}", last_error());
        let mut q = p;
        q.threshold = 1.5;
        assert_eq!(
            dlm_generate(s, prompt.as_ptr(), &q, None, null_mut()),
            DLM_ERR_INVALID_ARG
        );
        let mut q = p;
        q.gen_length = 1 << 20;
        q.steps = 1 << 20;
        assert_eq!(
            dlm_generate(s, prompt.as_ptr(), &q, None, null_mut()),
            DLM_ERR_INVALID_ARG
        );
        assert!(last_error().contains("context"), "{}", last_error());
        assert_eq!(text_of(s), "", "a failed run leaves no output");
        assert_eq!(
            dlm_generate_ids(s, null(), 3, &p, None, null_mut()),
            DLM_ERR_NULL
        );
        assert_eq!(
            dlm_generate_ids(s, ids.as_ptr(), DLM_MAX_IDS + 1, &p, None, null_mut()),
            DLM_ERR_INVALID_ARG
        );
        assert_eq!(
            dlm_generate_ids(s, null(), 0, &p, None, null_mut()),
            DLM_ERR_INVALID_ARG
        );
        assert!(last_error().contains("empty"), "{}", last_error());
        let oov = [1u32, 1 << 30];
        assert_eq!(
            dlm_generate_ids(s, oov.as_ptr(), 2, &p, None, null_mut()),
            DLM_ERR_INVALID_ARG
        );

        // Getter errors.
        assert!(dlm_session_text(null()).is_null());
        let mut ptr = null();
        let mut n = 0;
        assert_eq!(
            dlm_session_output_ids(null(), &mut ptr, &mut n),
            DLM_ERR_NULL
        );
        assert_eq!(dlm_session_output_ids(s, null_mut(), &mut n), DLM_ERR_NULL);
        assert_eq!(
            dlm_session_output_ids(s, &mut ptr, null_mut()),
            DLM_ERR_NULL
        );
        assert_eq!(dlm_session_nfe(s, null_mut()), DLM_ERR_NULL);
        assert_eq!(dlm_session_nfe(null(), &mut n), DLM_ERR_NULL);
        assert_eq!(dlm_session_prompt_len(null(), &mut n), DLM_ERR_NULL);

        dlm_session_free(s);
        dlm_model_free(m);
    }
}

#[test]
#[cfg_attr(not(dlm_shared), ignore = "needs ../shared/reference")]
fn handles_of_the_wrong_kind_and_freed_handles() {
    let Some(path) = model_path() else { return };
    let _g = serial();
    let m = open(&path);
    let s = new_session(m);
    let mut p = small(m);
    p.gen_length = 4;
    p.steps = 4;
    let mut out = null_mut();
    // SAFETY: the pointers are live handles used as the wrong kind, which the tag
    // check reads safely (both start with a tag word); then freed handles, which is only
    // sound here because SERIAL keeps other tests from reusing the memory meanwhile and glibc
    // keeps small freed chunks mapped (the best-effort check the header documents).
    unsafe {
        assert_eq!(dlm_session_new(s.cast(), &mut out), DLM_ERR_INVALID_HANDLE);
        assert!(out.is_null());
        assert!(dlm_session_text(m.cast()).is_null());
        assert!(
            last_error().contains("not a live dlm_session"),
            "{}",
            last_error()
        );
        let mut n = 0;
        assert_eq!(
            dlm_tokenize(s.cast(), c"x".as_ptr(), null_mut(), 0, &mut n),
            DLM_ERR_INVALID_HANDLE
        );
        // Freeing the wrong kind does nothing.
        dlm_model_free(s.cast());
        dlm_session_free(m.cast());
        assert!(last_error().contains("not a live"), "{}", last_error());

        // The model may go before its session.
        dlm_model_free(m);
        let ids = [1u32, 2, 3];
        assert_eq!(
            dlm_generate_ids(s, ids.as_ptr(), 3, &p, None, null_mut()),
            DLM_OK
        );
        assert_eq!(output_ids(s).len(), 7);

        // Use after free: detected, best-effort.
        assert_eq!(
            dlm_tokenize(m, c"x".as_ptr(), null_mut(), 0, &mut n),
            DLM_ERR_INVALID_HANDLE
        );
        dlm_model_free(m); // double free: refused
        dlm_session_free(s);
        assert_eq!(
            dlm_generate_ids(s, ids.as_ptr(), 3, &p, None, null_mut()),
            DLM_ERR_INVALID_HANDLE
        );
        dlm_session_free(s);
        assert!(
            last_error().contains("not a live dlm_session"),
            "{}",
            last_error()
        );
    }
}

#[test]
#[cfg_attr(not(dlm_shared), ignore = "needs ../shared/reference")]
fn one_model_shared_by_threads() {
    let Some(path) = model_path() else { return };
    let _g = serial();
    let m = open(&path);
    let p = small(m);
    let addr = m as usize;
    let runs: Vec<Vec<u32>> = std::thread::scope(|sc| {
        let hs: Vec<_> = (0..3)
            .map(|_| {
                sc.spawn(move || {
                    let m = addr as *const dlm_model;
                    let s = new_session(m);
                    // SAFETY: live session of a live model; the model is Sync by contract.
                    let st = unsafe { dlm_generate(s, c"Hello".as_ptr(), &p, None, null_mut()) };
                    assert_eq!(st, DLM_OK, "{}", last_error());
                    let ids = output_ids(s);
                    // SAFETY: live session, freed once.
                    unsafe { dlm_session_free(s) };
                    ids
                })
            })
            .collect();
        hs.into_iter().map(|h| h.join().unwrap()).collect()
    });
    assert!(runs.iter().all(|r| r == &runs[0] && !r.is_empty()));
    // SAFETY: live, freed once.
    unsafe { dlm_model_free(m) };
}

// ---------------------------------------------------------------------------------------
// Hardening (issue 15).

/// A copy of the converted model with `f` applied to the bytes of tensor `name`.
/// The folder is returned with the path: it is removed when dropped.
fn damaged_copy(
    name: &str,
    tag: &str,
    f: impl FnOnce(&mut [u8]),
) -> Option<(common::TempDir, PathBuf)> {
    let model = model_path()?;
    let mut bytes = std::fs::read(&model).unwrap();
    let file = dlm_formats::DlmFile::parse(&bytes).unwrap();
    let t = file.tensor(name).unwrap().clone();
    f(&mut bytes[t.offset as usize..(t.offset + t.len_bytes) as usize]);
    let dir = common::temp_dir(&format!("c-abi-{tag}"));
    let out = dir.join("damaged.dlm");
    std::fs::write(&out, bytes).unwrap();
    Some((dir, out))
}

#[test]
fn open_verified_catches_flipped_bytes_and_nan_norms_are_caught_always() {
    let _g = serial();
    let Some(good) = model_path() else { return };
    let Some((_flip_dir, flipped)) = damaged_copy("blk.1.wq", "flip", |d| d[100] ^= 0x40) else {
        return;
    };
    let Some((_nan_dir, nan)) = damaged_copy("out_norm", "nan", |d| {
        d[8..12].copy_from_slice(&f32::NAN.to_le_bytes())
    }) else {
        return;
    };
    // SAFETY: valid strings and out pointers; every opened model is freed.
    unsafe {
        let mut m = null_mut();
        let st = dlm_model_open_verified(cstring(&good).as_ptr(), DLM_OPEN_VERIFY, &mut m);
        assert_eq!(st, DLM_OK, "{}", last_error());
        dlm_model_free(m);
        // Flipped weight bytes: found only when asked (the file is otherwise well-formed).
        assert_eq!(dlm_model_open(cstring(&flipped).as_ptr(), &mut m), DLM_OK);
        dlm_model_free(m);
        let st = dlm_model_open_verified(cstring(&flipped).as_ptr(), DLM_OPEN_VERIFY, &mut m);
        assert_eq!(st, DLM_ERR_CORRUPT, "{}", last_error());
        assert!(m.is_null());
        assert!(last_error().contains("blk.1.wq"), "{}", last_error());
        // A NaN norm weight: refused on every open.
        assert_eq!(
            dlm_model_open(cstring(&nan).as_ptr(), &mut m),
            DLM_ERR_CORRUPT
        );
        assert!(last_error().contains("out_norm"), "{}", last_error());
        assert_eq!(
            dlm_model_open_verified(cstring(&good).as_ptr(), 0x80, &mut m),
            DLM_ERR_INVALID_ARG
        );
    }
    let h = std::fs::read_to_string(root().join("include/dlm.h")).unwrap();
    assert!(h.contains(&format!("#define DLM_OPEN_VERIFY {DLM_OPEN_VERIFY}u")));
}

#[test]
fn huge_step_counts_are_clamped_or_refused_at_once() {
    let _g = serial();
    let Some(path) = model_path() else { return };
    let m = open(&path);
    let s = new_session(m);
    let mut p = defaults(m);
    p.gen_length = 8;
    p.block_length = 8;
    p.steps = u32::MAX;
    let ids = [2042u32, 39, 906];
    let t0 = std::time::Instant::now();
    // SAFETY: live session, valid ids and params.
    let st = unsafe { dlm_generate_ids(s, ids.as_ptr(), ids.len(), &p, None, null_mut()) };
    assert_eq!(st, DLM_OK, "{}", last_error());
    assert!(t0.elapsed().as_secs() < 30, "{:?}", t0.elapsed());
    // SAFETY: handles from above, freed once.
    unsafe {
        dlm_session_free(s);
        dlm_model_free(m);
    }
}

#[test]
fn the_header_says_plainly_that_a_stale_handle_is_undefined_behaviour() {
    let h = std::fs::read_to_string(root().join("include/dlm.h")).unwrap();
    assert!(
        h.contains("Using a handle after it was freed is undefined behaviour")
            && h.contains("the stale pointer IS the new handle"),
        "dlm.h must document stale handles as UB"
    );
}
