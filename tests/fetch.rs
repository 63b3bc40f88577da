//! `nave-lab data fetch` against a server on 127.0.0.1 started here, serving
//! fixture archives: fetched, verified, unpacked and trained on; a transfer
//! cut halfway and resumed with a Range request; a checksum mismatch; no
//! server at all; hostile archives (links, a decompression bomb, a truncated
//! unpinned zip) and the weights cache's pins.
mod common;

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use common::{nave_lab, refused, scratch};
use sha2::{Digest, Sha256};

/// Each request's path and Range header.
type RequestLog = Mutex<Vec<(String, Option<String>)>>;

/// A file server on 127.0.0.1 that honours `Range: bytes=N-` and cuts the
/// first `cuts` transfers halfway (full Content-Length announced, half sent).
struct Server {
    url: String,
    /// (path, Range header) of every request.
    log: Arc<RequestLog>,
}

impl Server {
    fn start(files: HashMap<String, Vec<u8>>, cuts: usize) -> Server {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let log = Arc::new(Mutex::new(Vec::new()));
        let (files, cuts) = (Arc::new(files), Arc::new(AtomicUsize::new(cuts)));
        let thread_log = log.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let (files, cuts, log) = (files.clone(), cuts.clone(), thread_log.clone());
                std::thread::spawn(move || serve(stream, &files, &cuts, &log));
            }
        });
        Server { url, log }
    }
}

fn serve(
    mut stream: TcpStream,
    files: &HashMap<String, Vec<u8>>,
    cuts: &AtomicUsize,
    log: &RequestLog,
) {
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut line = String::new();
    reader.read_line(&mut line).unwrap();
    let path = line.split_whitespace().nth(1).unwrap_or("/").to_string();
    let mut range = None;
    loop {
        let mut h = String::new();
        if reader.read_line(&mut h).unwrap() == 0 || h == "\r\n" {
            break;
        }
        if let Some(v) = h.to_ascii_lowercase().strip_prefix("range:") {
            range = Some(v.trim().to_string());
        }
    }
    log.lock().unwrap().push((path.clone(), range.clone()));
    let Some(body) = files.get(path.trim_start_matches('/')) else {
        let _ = stream
            .write_all(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
        return;
    };
    let start: usize = range
        .as_deref()
        .and_then(|r| r.strip_prefix("bytes="))
        .and_then(|r| r.trim_end_matches('-').parse().ok())
        .unwrap_or(0);
    let rest = &body[start..];
    let status = if start > 0 {
        format!(
            "206 Partial Content\r\nContent-Range: bytes {start}-{}/{}",
            body.len() - 1,
            body.len()
        )
    } else {
        "200 OK".to_string()
    };
    let head = format!(
        "HTTP/1.1 {status}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        rest.len()
    );
    let _ = stream.write_all(head.as_bytes());
    let cut = cuts
        .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |c| c.checked_sub(1))
        .is_ok();
    let _ = stream.write_all(if cut { &rest[..rest.len() / 2] } else { rest });
    let _ = stream.flush();
}

/// A tar.gz in STL-10's layout: `stl10_binary/` with 40 training and 20 test
/// images, every class a grey level of its own, 1-based labels.
fn stl10_archive() -> Vec<u8> {
    let mut tar = tar::Builder::new(flate2::write::GzEncoder::new(
        Vec::new(),
        flate2::Compression::fast(),
    ));
    let mut add = |name: &str, data: &[u8]| {
        let mut header = tar::Header::new_gnu();
        header.set_size(data.len() as u64);
        header.set_mode(0o644);
        header.set_cksum();
        tar.append_data(&mut header, format!("stl10_binary/{name}"), data)
            .unwrap();
    };
    for (split, n) in [("train", 40usize), ("test", 20)] {
        let labels: Vec<u8> = (0..n).map(|i| 1 + (i % 10) as u8).collect();
        let mut x = Vec::with_capacity(n * 3 * 96 * 96);
        for &l in &labels {
            x.extend(std::iter::repeat_n(l * 25, 3 * 96 * 96));
        }
        add(&format!("{split}_X.bin"), &x);
        add(&format!("{split}_y.bin"), &labels);
    }
    add(
        "class_names.txt",
        b"airplane\nbird\ncar\ncat\ndeer\ndog\nhorse\nmonkey\nship\ntruck\n",
    );
    tar.into_inner().unwrap().finish().unwrap()
}

fn hex_sha256(data: &[u8]) -> String {
    Sha256::digest(data)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn fetch(root: &Path, mirror: &str, sha256: &str) -> std::process::Output {
    nave_lab()
        .args(["data", "fetch", "stl10", "--root"])
        .arg(root)
        .args(["--mirror", mirror, "--sha256", sha256])
        .env_remove("NAVE_LAB_MIRROR")
        .output()
        .unwrap()
}

fn names(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| !n.ends_with(".lock"))
        .collect();
    v.sort();
    v
}

/// Trains a one-run, one-epoch experiment on the STL-10 folder under `root`
/// (checkpoints in `dir/checkpoints`).
fn train_stl10(dir: &Path, root: &Path) -> std::process::Output {
    let exp = dir.join("s.yaml");
    std::fs::write(
        &exp,
        format!(
            "name: s\ndataset:\n  kind: stl10\n  root: {}\n  image_size: 32\nmodel:\n  arch: resnet18\n  width: 8\ntrain:\n  epochs: 1\n  batch_size: 20\n  optimizer: {{kind: sgd, lr: 0.05}}\nwatermark: {{size: 0.2, target_class: airplane}}\ngrid:\n  augment: [false]\n  watermark: [false]\n  seed: [0]\n",
            root.display()
        ),
    )
    .unwrap();
    nave_lab()
        .args(["-q", "train"])
        .arg(&exp)
        .arg("--checkpoints")
        .arg(dir.join("checkpoints"))
        .output()
        .unwrap()
}

#[test]
fn stl10_is_fetched_resumed_verified_unpacked_and_trained_on() {
    let archive = stl10_archive();
    let sha = hex_sha256(&archive);
    let server = Server::start(
        HashMap::from([("stl10_binary.tar.gz".to_string(), archive.clone())]),
        1,
    );
    let dir = scratch("fetch_stl10");
    let root = dir.join("data");
    let o = fetch(&root, &server.url, &sha);
    common::assert_ok(&o);
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(out.contains(&sha) && out.contains("dataset.root"), "{out}");
    // The first transfer was cut halfway; the second asked for the rest.
    let log = server.log.lock().unwrap().clone();
    assert_eq!(log.len(), 2, "{log:?}");
    assert_eq!(log[0].1, None);
    let resumed_at: usize = log[1]
        .1
        .as_deref()
        .and_then(|r| r.strip_prefix("bytes="))
        .and_then(|r| r.trim_end_matches('-').parse().ok())
        .expect("a Range request");
    assert_eq!(resumed_at, (archive.len()) / 2);
    // The archive is kept whole, the layout is stl10's, nothing else is left.
    assert_eq!(
        std::fs::read(root.join("stl10_binary.tar.gz")).unwrap(),
        archive
    );
    assert_eq!(names(&root), vec!["stl10_binary", "stl10_binary.tar.gz"]);
    assert_eq!(
        names(&root.join("stl10_binary")),
        vec![
            "class_names.txt",
            "test_X.bin",
            "test_y.bin",
            "train_X.bin",
            "train_y.bin"
        ]
    );
    // A second fetch finds it there and downloads nothing.
    let o = fetch(&root, &server.url, &sha);
    common::assert_ok(&o);
    assert!(String::from_utf8_lossy(&o.stdout).contains("already there"));
    assert_eq!(server.log.lock().unwrap().len(), 2);

    // Trained on, as an experiment names it.
    let o = train_stl10(&dir, &root);
    common::assert_ok(&o);
    let runs: Vec<_> = std::fs::read_dir(dir.join("checkpoints/s"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.join("COMPLETE").is_file())
        .collect();
    assert_eq!(runs.len(), 1, "one finished run");
}

#[test]
fn a_checksum_mismatch_keeps_nothing_and_a_missing_server_says_what_to_do() {
    let archive = stl10_archive();
    let server = Server::start(
        HashMap::from([("stl10_binary.tar.gz".to_string(), archive)]),
        0,
    );
    let root = scratch("fetch_mismatch").join("data");
    let o = fetch(&root, &server.url, &"0".repeat(64));
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("checksum mismatch")
            && err.contains(&"0".repeat(64))
            && err.contains("--sha256"),
        "{err}"
    );
    assert!(names(&root).is_empty(), "nothing kept: {:?}", names(&root));

    // A mirror without the file: 404, named.
    let empty = Server::start(HashMap::new(), 0);
    let o = fetch(&root, &empty.url, &"0".repeat(64));
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("404") && err.contains("stl10_binary.tar.gz"),
        "{err}"
    );

    // No server at all: the URL, and how to place the file by hand.
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let o = fetch(&root, &format!("http://127.0.0.1:{port}"), &"0".repeat(64));
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains(&format!("http://127.0.0.1:{port}/stl10_binary.tar.gz"))
            && err.contains("by hand")
            && err.contains(&root.join("stl10_binary.tar.gz").display().to_string()),
        "{err}"
    );
    assert!(names(&root).is_empty(), "{:?}", names(&root));
}

#[test]
fn train_without_the_data_names_the_fetch_command() {
    let dir = scratch("fetch_hint");
    let o = train_stl10(&dir, &dir.join("nowhere"));
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains(&format!(
            "nave-lab data fetch stl10 --root {}",
            dir.join("nowhere").display()
        )),
        "{err}"
    );
}

/// A zip laid out as Kermany et al.'s release: `chest_xray/{train,test}/{NORMAL,PNEUMONIA}/`,
/// with a `__MACOSX/` copy beside it.
fn chest_xray_zip() -> Vec<u8> {
    let mut z = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    let options = zip::write::SimpleFileOptions::default()
        .compression_method(zip::CompressionMethod::Deflated);
    for top in ["__MACOSX/chest_xray", "chest_xray"] {
        for split in ["train", "test"] {
            for (class, level) in [("NORMAL", 30u8), ("PNEUMONIA", 220)] {
                for i in 0..3 {
                    let mut png = Vec::new();
                    image::GrayImage::from_pixel(40, 40, image::Luma([level]))
                        .write_to(&mut std::io::Cursor::new(&mut png), image::ImageFormat::Png)
                        .unwrap();
                    z.start_file(format!("{top}/{split}/{class}/{i}.png"), options)
                        .unwrap();
                    z.write_all(&png).unwrap();
                }
            }
        }
    }
    z.finish().unwrap().into_inner()
}

#[test]
fn chest_xrays_unpack_into_the_folder_dataset_root_names() {
    let archive = chest_xray_zip();
    let server = Server::start(
        HashMap::from([("ChestXRay2017.zip".to_string(), archive.clone())]),
        0,
    );
    let root = scratch("fetch_cxr").join("data");
    let o = nave_lab()
        .args(["data", "fetch", "chest-xray", "--root"])
        .arg(&root)
        .env("NAVE_LAB_MIRROR", &server.url)
        .output()
        .unwrap();
    common::assert_ok(&o);
    let out = String::from_utf8_lossy(&o.stdout);
    // No checksum is published: the SHA-256 is printed to pin it.
    assert!(
        out.contains(&format!("--sha256 {}", hex_sha256(&archive))),
        "{out}"
    );
    assert_eq!(names(&root), vec!["ChestXRay2017.zip", "chest_xray"]);
    assert_eq!(names(&root.join("chest_xray")), vec!["test", "train"]);
    assert_eq!(names(&root.join("chest_xray/train/NORMAL")).len(), 3);
    // The folder reads as a chest-xray data set.
    let o = nave_lab()
        .args(["data", "stats", "--dataset", "chest-xray", "--root"])
        .arg(root.join("chest_xray"))
        .output()
        .unwrap();
    common::assert_ok(&o);
    assert!(String::from_utf8_lossy(&o.stdout).contains("PNEUMONIA"));
}

/// Weights by name: a DINO ViT-S/16 (a `torch.save` state dict written by the
/// reference environment) served by a mirror is downloaded once into the
/// cache, pinned by its first SHA-256, used by `explain` and as a training
/// run's `model.init` (its SHA-256 recorded in run.yaml); a torchvision name
/// whose file does not match the hash in its name is refused and not kept.
#[test]
fn named_weights_are_fetched_once_checked_cached_and_recorded() {
    let dir = scratch("fetch_weights");
    let pth = dir.join("pth");
    std::fs::create_dir_all(&pth).unwrap();
    common::run_reference("make_pth.py", &[pth.to_str().unwrap()]);
    let vits = std::fs::read(pth.join("vits.pth")).unwrap();
    let server = Server::start(
        HashMap::from([
            ("dino_deitsmall16_pretrain.pth".to_string(), vits.clone()),
            (
                "resnet18-f37072fd.pth".to_string(),
                std::fs::read(pth.join("plain.pth")).unwrap(),
            ),
        ]),
        0,
    );
    let cache = dir.join("cache");
    let with_env = |cmd: &mut std::process::Command| {
        cmd.env("NAVE_LAB_MIRROR", &server.url)
            .env("NAVE_LAB_CACHE", &cache);
    };
    let image = dir.join("x.png");
    image::RgbImage::from_fn(64, 64, |x, y| {
        image::Rgb([(x * 4) as u8, (y * 4) as u8, 90])
    })
    .save(&image)
    .unwrap();
    let explain_with = |out: &str, extra: &[&str]| {
        let mut cmd = nave_lab();
        with_env(&mut cmd);
        cmd.args([
            "-q",
            "explain",
            "--weights",
            "dino:vits16",
            "--image-size",
            "64",
            "--image",
        ])
        .arg(&image)
        .arg("--out")
        .arg(dir.join(out))
        .args(extra)
        .output()
        .unwrap()
    };
    let explain = |out: &str| explain_with(out, &[]);
    // No checksum is published for DINO's files: a mirror's copy is not
    // taken without --sha256 (whatever it served would be pinned).
    let o = explain("refused.png");
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("cannot be checked") && err.contains("--sha256"),
        "{err}"
    );
    assert!(
        server.log.lock().unwrap().is_empty()
            && !cache
                .join("weights")
                .join("dino_deitsmall16_pretrain.pth")
                .exists()
    );
    common::assert_ok(&explain_with("a.png", &["--sha256", &hex_sha256(&vits)]));
    assert!(dir.join("a.png").is_file());
    let cached = cache.join("weights/dino_deitsmall16_pretrain.pth");
    assert_eq!(std::fs::read(&cached).unwrap(), vits);
    let pinned =
        std::fs::read_to_string(cache.join("weights/dino_deitsmall16_pretrain.pth.sha256"))
            .unwrap();
    assert_eq!(pinned.trim(), hex_sha256(&vits));
    // Cached: no second download.
    common::assert_ok(&explain("b.png"));
    assert_eq!(server.log.lock().unwrap().len(), 1);
    // A cached copy that changed no longer matches its pinned SHA-256: fetched again.
    std::fs::write(&cached, b"corrupt").unwrap();
    common::assert_ok(&explain("c.png"));
    assert_eq!(server.log.lock().unwrap().len(), 2);
    assert_eq!(std::fs::read(&cached).unwrap(), vits);
    // A file in the cache without its pin (placed by hand) is refused until
    // --sha256 pins it.
    let sidecar = cache.join("weights/dino_deitsmall16_pretrain.pth.sha256");
    std::fs::remove_file(&sidecar).unwrap();
    let o = explain("d.png");
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("without a pinned SHA-256")
            && err.contains(&format!("--sha256 {}", hex_sha256(&vits))),
        "{err}"
    );
    common::assert_ok(&explain_with("d.png", &["--sha256", &hex_sha256(&vits)]));
    assert_eq!(
        std::fs::read_to_string(&sidecar).unwrap().trim(),
        hex_sha256(&vits)
    );
    assert_eq!(
        server.log.lock().unwrap().len(),
        2,
        "pinned without a download"
    );

    // A training run from named weights records their SHA-256.
    let exp = dir.join("v.yaml");
    std::fs::write(
        &exp,
        "name: v\ndataset:\n  kind: synthetic\n  image_size: 64\n  synthetic: {seed: 0, train: 16, test: 16}\nmodel:\n  arch: vit_s16\n  init: dino:vits16\ntrain:\n  epochs: 1\n  batch_size: 16\n  optimizer: {kind: sgd, lr: 0.01}\nwatermark: {size: 0.2}\ngrid:\n  augment: [false]\n  watermark: [false]\n  seed: [0]\n",
    )
    .unwrap();
    let mut cmd = nave_lab();
    with_env(&mut cmd);
    let o = cmd
        .args(["-q", "train"])
        .arg(&exp)
        .arg("--checkpoints")
        .arg(dir.join("checkpoints"))
        .output()
        .unwrap();
    common::assert_ok(&o);
    let run = std::fs::read_dir(dir.join("checkpoints/v"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.join("run.yaml").is_file())
        .unwrap();
    let run_yaml = std::fs::read_to_string(run.join("run.yaml")).unwrap();
    assert!(
        run_yaml.contains("init: dino:vits16") && run_yaml.contains(&hex_sha256(&vits)),
        "{run_yaml}"
    );

    // torchvision's name carries the first digits of its SHA-256: this file
    // is not it. (The mirror named on the command line this time.)
    let resnet18 = |extra: &[&str]| {
        nave_lab()
            .env_remove("NAVE_LAB_MIRROR")
            .env("NAVE_LAB_CACHE", &cache)
            .args(["-q", "explain", "--weights", "torchvision:resnet18"])
            .args(["--mirror", &server.url])
            .args(extra)
            .arg("--image")
            .arg(&image)
            .arg("--out")
            .arg(dir.join("r.png"))
            .output()
            .unwrap()
    };
    let o = resnet18(&[]);
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("checksum mismatch") && err.contains("f37072fd"),
        "{err}"
    );
    assert!(!cache.join("weights/resnet18-f37072fd.pth").exists());
    assert!(!cache.join("weights/resnet18-f37072fd.pth.part").exists());
    // --sha256 does not override the digits torchvision publishes.
    let plain = std::fs::read(pth.join("plain.pth")).unwrap();
    let o = resnet18(&["--sha256", &hex_sha256(&plain)]);
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("torchvision publishes") && err.contains("f37072fd"),
        "{err}"
    );
    assert!(!cache.join("weights/resnet18-f37072fd.pth").exists());
}

/// A `.part` left by an earlier run of another version of the file: the
/// resumed whole fails its checksum, so the file is fetched once more from
/// the start, and the result is right.
#[test]
fn a_stale_partial_download_is_replaced_not_trusted() {
    let archive = stl10_archive();
    let server = Server::start(
        HashMap::from([("stl10_binary.tar.gz".to_string(), archive.clone())]),
        0,
    );
    let root = scratch("fetch_stale").join("data");
    std::fs::create_dir_all(&root).unwrap();
    std::fs::write(
        root.join("stl10_binary.tar.gz.part"),
        vec![7u8; archive.len() / 3],
    )
    .unwrap();
    common::assert_ok(&fetch(&root, &server.url, &hex_sha256(&archive)));
    let log = server.log.lock().unwrap().clone();
    assert_eq!(log.len(), 2, "{log:?}");
    assert_eq!(
        log[0].1.as_deref(),
        Some(format!("bytes={}-", archive.len() / 3).as_str())
    );
    assert_eq!(log[1].1, None, "the second request starts over");
    assert_eq!(
        std::fs::read(root.join("stl10_binary.tar.gz")).unwrap(),
        archive
    );
}

/// A tar.gz of `entries` (name, what): `Some(bytes)` a file, `None` a
/// symbolic link to the text after `->` in the name.
fn tar_gz(entries: &[(&str, Option<&[u8]>)]) -> Vec<u8> {
    let mut tar = tar::Builder::new(flate2::write::GzEncoder::new(
        Vec::new(),
        flate2::Compression::fast(),
    ));
    for (name, data) in entries {
        let mut header = tar::Header::new_gnu();
        header.set_mode(0o644);
        match data {
            Some(d) => {
                header.set_size(d.len() as u64);
                header.set_cksum();
                tar.append_data(&mut header, name, *d).unwrap();
            }
            None => {
                let (name, target) = name.split_once(" -> ").unwrap();
                header.set_entry_type(tar::EntryType::Symlink);
                header.set_size(0);
                tar.append_link(&mut header, name, target).unwrap();
            }
        }
    }
    tar.into_inner().unwrap().finish().unwrap()
}

fn fetch_with(root: &Path, server: &Server, args: &[&str]) -> std::process::Output {
    nave_lab()
        .args(["data", "fetch"])
        .args(args)
        .arg("--root")
        .arg(root)
        .env("NAVE_LAB_MIRROR", &server.url)
        .output()
        .unwrap()
}

/// Archives from elsewhere: a link is refused whether it points at a folder
/// elsewhere on disk (before, that folder was moved into the data root and
/// emptied) or sits inside the layout; an archive that unpacks past its
/// limit stops with the flag that raises it; an unpinned archive that does
/// not unpack is removed, so the next fetch gets the good one.
#[test]
fn hostile_archives_are_refused_and_a_corrupt_one_is_not_reused() {
    let dir = scratch("fetch_hostile");
    // A folder elsewhere that looks like STL-10's layout.
    let victim = dir.join("victim");
    std::fs::create_dir_all(&victim).unwrap();
    for f in ["train_X.bin", "test_y.bin", "secret"] {
        std::fs::write(victim.join(f), b"mine").unwrap();
    }
    let link_to_folder = tar_gz(&[(&format!("z -> {}", victim.display()), None)]);
    let link_in_layout = tar_gz(&[
        ("stl10_binary/test_y.bin", Some(b"1")),
        (
            &format!(
                "stl10_binary/train_X.bin -> {}",
                victim.join("secret").display()
            ),
            None,
        ),
    ]);
    for (i, archive) in [link_to_folder, link_in_layout].into_iter().enumerate() {
        let server = Server::start(
            HashMap::from([("stl10_binary.tar.gz".to_string(), archive.clone())]),
            0,
        );
        let root = dir.join(format!("data{i}"));
        let err = refused(&fetch(&root, &server.url, &hex_sha256(&archive)));
        assert!(
            err.contains("symbolic link") && err.contains("refused"),
            "{err}"
        );
        assert!(!root.join("stl10_binary").exists(), "{err}");
        assert_eq!(names(&victim), ["secret", "test_y.bin", "train_X.bin"]);
        // Pinned by --sha256: the publisher's file, kept, and the error says how to remove it.
        assert!(err.contains("rm "), "{err}");
    }

    // 80 MB of zeros in a ~80 KB archive: past the default limit (64 MB here).
    let mut entries: Vec<(String, Vec<u8>)> = vec![
        ("stl10_binary/test_y.bin".into(), vec![1]),
        ("stl10_binary/train_X.bin".into(), vec![0; 80 << 20]),
    ];
    let bomb = tar_gz(
        &entries
            .iter()
            .map(|(n, d)| (n.as_str(), Some(d.as_slice())))
            .collect::<Vec<_>>(),
    );
    entries.clear();
    let server = Server::start(
        HashMap::from([("stl10_binary.tar.gz".to_string(), bomb.clone())]),
        0,
    );
    let root = dir.join("bomb");
    let err = refused(&fetch(&root, &server.url, &hex_sha256(&bomb)));
    assert!(
        err.contains("--max-unpacked") && err.contains("67108864"),
        "{err}"
    );
    assert_eq!(names(&root), ["stl10_binary.tar.gz"], "nothing unpacked");
    let o = fetch_with(
        &root,
        &server,
        &[
            "stl10",
            "--sha256",
            &hex_sha256(&bomb),
            "--max-unpacked",
            "100M",
        ],
    );
    common::assert_ok(&o);
    assert_eq!(
        std::fs::metadata(root.join("stl10_binary/train_X.bin"))
            .unwrap()
            .len(),
        80 << 20
    );

    // A truncated chest-X-ray zip (no checksum is published): removed, and
    // the next fetch, from a server with the good file, succeeds.
    let good = chest_xray_zip();
    let bad = Server::start(
        HashMap::from([(
            "ChestXRay2017.zip".to_string(),
            good[..good.len() / 2].to_vec(),
        )]),
        0,
    );
    let root = dir.join("cxr");
    let err = refused(&fetch_with(&root, &bad, &["chest-xray"]));
    assert!(
        err.contains("was removed") && err.contains("data fetch chest-xray"),
        "{err}"
    );
    assert!(!root.join("ChestXRay2017.zip").exists());
    let fine = Server::start(HashMap::from([("ChestXRay2017.zip".to_string(), good)]), 0);
    common::assert_ok(&fetch_with(&root, &fine, &["chest-xray"]));
    assert!(root.join("chest_xray/train/NORMAL").is_dir());
}
