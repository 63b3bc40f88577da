//! Link-time facts about libtorch that the binary needs at run time.
//!
//! * rpath: the binary (and every test binary) finds libtorch without
//!   LD_LIBRARY_PATH. The rpath points at the *real* torch lib folder (the link
//!   folder holds symlinks), because libtorch_cpu.so finds its CUDA runtime through
//!   `$ORIGIN/../../nvidia/...`, and `$ORIGIN` is the folder it was loaded from.
//! * libtorch_cuda: nothing in our code references it, so the linker's
//!   `--as-needed` would drop it and CUDA would silently read as unavailable.
//!   When the link folder has it, it is linked with `--no-as-needed`.
//! * The libtorch version and folder are baked in for `nave-lab doctor`.
use std::env;
use std::path::{Path, PathBuf};

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-env-changed=LIBTORCH");
    let lib_dir = PathBuf::from(
        env::var("DEP_TCH_LIBTORCH_LIB").expect("torch-sys did not report its libtorch lib folder"),
    );
    // The link folder changes (gains libtorch_cuda.so) when the GPU set-up runs.
    println!("cargo:rerun-if-changed={}", lib_dir.display());

    let real_lib_dir = real_dir_of(&lib_dir.join("libtorch_cpu.so")).unwrap_or(lib_dir.clone());
    println!("cargo:rustc-link-arg=-Wl,-rpath,{}", real_lib_dir.display());
    if lib_dir.join("libtorch_cuda.so").exists() {
        println!("cargo:rustc-link-search=native={}", lib_dir.display());
        println!("cargo:rustc-link-arg=-Wl,--push-state,--no-as-needed");
        println!("cargo:rustc-link-arg=-ltorch_cuda");
        if lib_dir.join("libc10_cuda.so").exists() {
            println!("cargo:rustc-link-arg=-lc10_cuda");
        }
        println!("cargo:rustc-link-arg=-Wl,--pop-state");
        println!("cargo:rustc-env=NAVE_LAB_LINKED_CUDA=1");
    } else {
        println!("cargo:rustc-env=NAVE_LAB_LINKED_CUDA=0");
    }
    println!(
        "cargo:rustc-env=NAVE_LAB_LIBTORCH_LIB={}",
        real_lib_dir.display()
    );
    compile_autocast_shim(&lib_dir);
    let version = libtorch_version(&lib_dir).unwrap_or_else(|| "unknown".to_string());
    println!("cargo:rustc-env=NAVE_LAB_LIBTORCH_VERSION={version}");
}

fn real_dir_of(file: &Path) -> Option<PathBuf> {
    std::fs::canonicalize(file)
        .ok()?
        .parent()
        .map(Path::to_path_buf)
}

/// Reads `TORCH_VERSION_MAJOR/MINOR/PATCH` from libtorch's version header (the
/// include folder sits beside `lib/`, in the link folder and in an unpacked
/// libtorch alike; the header moved between releases, so both places are tried).
fn libtorch_version(lib_dir: &Path) -> Option<String> {
    let root = lib_dir.parent()?;
    let headers = [
        "include/torch/headeronly/version.h",
        "include/torch/csrc/api/include/torch/version.h",
    ];
    for header in headers {
        let Ok(text) = std::fs::read_to_string(root.join(header)) else {
            continue;
        };
        let define = |name: &str| {
            text.lines()
                .find_map(|l| l.trim().strip_prefix(&format!("#define {name} ")))
                .map(|v| v.trim().to_string())
        };
        if let (Some(a), Some(b), Some(c)) = (
            define("TORCH_VERSION_MAJOR"),
            define("TORCH_VERSION_MINOR"),
            define("TORCH_VERSION_PATCH"),
        ) {
            return Some(format!("{a}.{b}.{c}"));
        }
    }
    None
}

/// Compiles csrc/torch_extras.cpp (bf16 autocast, gradient release, foreach SGD) against the
/// libtorch headers beside `lib/`.
fn compile_autocast_shim(lib_dir: &Path) {
    println!("cargo:rerun-if-changed=csrc/torch_extras.cpp");
    let root = lib_dir.parent().expect("libtorch lib folder has a parent");
    cc::Build::new()
        .cpp(true)
        .pic(true)
        .warnings(false)
        .include(root.join("include"))
        .include(root.join("include/torch/csrc/api/include"))
        .flag("-std=c++17")
        .flag("-D_GLIBCXX_USE_CXX11_ABI=1")
        .file("csrc/torch_extras.cpp")
        .compile("nave_torch_extras");
}
