//! Tests of `contrastive::data`: every loader on well-formed and corrupt input (files written to a
//! temporary folder by the tests themselves), the synthetic generator's statistics, each
//! augmentation's effect on hand-made images, and the loader's layout, determinism and
//! prefetching.

use contrastive::Error;
use contrastive::data::transforms::{self, ImageDims, Region};
use contrastive::data::{
    Augment, Dataset, LatentSubclasses, Loader, LoaderConfig, Sampler, Step, SyntheticConfig,
    digits, gzip, load_cifar10, load_cifar10_dir, load_idx, load_npy_dataset, npy,
};
use rand::SeedableRng;
use rand::rngs::StdRng;
use std::path::Path;

mod common;
use common::Scratch;

/// The `(file, at, message)` of a corrupt-data error; fails the test for any other result.
fn data_error<T: std::fmt::Debug>(result: contrastive::Result<T>) -> (String, u64, String) {
    match result {
        Err(Error::Data { file, at, message }) => (file, at, message),
        other => panic!("expected a Data error, got {other:?}"),
    }
}

// ---------------------------------------------------------------- gzip and digits

#[test]
fn gzip_round_trips_stored_and_reads_fixed_huffman() {
    for len in [0, 1, 1000, 70_000] {
        let data: Vec<u8> = (0..len).map(|i| (i * 7 % 251) as u8).collect();
        assert_eq!(
            gzip::decompress(&gzip::compress_stored(&data), "t").unwrap(),
            data
        );
    }
    // `zlib.compressobj(9, DEFLATED, 31, 9, Z_FIXED)` output: a fixed-code block with matches.
    let fixed = [
        0x1f, 0x8b, 0x08, 0x00, 0x00, 0x00, 0x00, 0x00, 0x02, 0x03, 0x4b, 0x4c, 0x2a, 0x4a, 0x4c,
        0x4e, 0x4c, 0x49, 0x04, 0x52, 0x0a, 0x89, 0xd8, 0xd9, 0x8a, 0x5c, 0x00, 0xcd, 0x23, 0x56,
        0x5c, 0x25, 0x00, 0x00, 0x00,
    ];
    let text = gzip::decompress(&fixed, "t").unwrap();
    assert_eq!(text, b"abracadabra abracadabra abracadabra!\n");
    // Two concatenated members decode to the concatenation.
    let mut two = gzip::compress_stored(b"ab");
    two.extend(gzip::compress_stored(b"cd"));
    assert_eq!(gzip::decompress(&two, "t").unwrap(), b"abcd");
}

#[test]
fn gzip_reports_corruption_with_offsets() {
    let good = gzip::compress_stored(b"hello world");
    let (_, at, msg) = data_error(gzip::decompress(&good[..good.len() - 10], "f.gz"));
    assert_eq!(at as usize, good.len() - 10, "{msg}");
    let mut bad_crc = good.clone();
    let n = bad_crc.len();
    bad_crc[n - 8] ^= 1;
    let (file, at, msg) = data_error(gzip::decompress(&bad_crc, "f.gz"));
    assert_eq!((file.as_str(), at as usize), ("f.gz", n - 8));
    assert!(msg.contains("CRC"), "{msg}");
    let mut bad_type = good.clone();
    bad_type[10] = 0b111; // final block of the reserved type 3
    assert!(
        data_error(gzip::decompress(&bad_type, "f.gz"))
            .2
            .contains("block type")
    );
    let mut trailing = good;
    trailing.push(7);
    assert_eq!(
        data_error(gzip::decompress(&trailing, "f.gz")).1 as usize,
        n
    );
}

#[test]
fn digits_loads_1797_rows_in_ten_classes_split_360() {
    let all = digits::digits_embedded().unwrap();
    assert_eq!(
        (all.len(), all.num_classes(), all.item_shape()),
        (1797, 10, &[1, 8, 8][..])
    );
    assert!(
        all.class_counts().iter().all(|&c| (170..=190).contains(&c)),
        "{:?}",
        all.class_counts()
    );
    let (lo, hi) = all
        .data()
        .iter()
        .fold((f32::MAX, f32::MIN), |(a, b), &v| (a.min(v), b.max(v)));
    assert_eq!((lo, hi), (0.0, 1.0));
    assert!(
        all.data().iter().all(|v| (v * 16.0).fract() == 0.0),
        "values are counts / 16"
    );
    // The first row of the file, as `zcat datasets/digits.csv.gz | head -1` shows it.
    let first = [0., 0., 5., 13., 9., 1., 0., 0.];
    assert_eq!(&all.item(0)[..8], &first.map(|v: f32| v / 16.0)[..]);
    assert_eq!(all.labels()[0], 0);
    let (train, test) = digits::digits_train_test().unwrap();
    assert_eq!((train.len(), test.len()), (1437, 360));
    assert_eq!(test.item(1), all.item(5));
    assert_eq!(train.item(4), all.item(6));
    let from_file = contrastive::data::load_digits(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("datasets/digits.csv.gz"),
    );
    assert_eq!(from_file.unwrap(), all);
}

#[test]
fn digits_rejects_bad_rows_with_offsets() {
    let dir = Scratch::new("digits");
    let row = |last: &str| format!("{}{last}\n", "0,".repeat(64));
    let cases = [
        (
            format!("{}{}", row("3"), row("12")),
            64 * 2 + 2 + 128,
            "label 12",
        ),
        (format!("{}{}", row("3"), row("10")), 130 + 128, "label 10"),
        (format!("{}1,2\n", row("3")), 130, "has 2 fields"),
        (
            format!("{}0,{}", row("3"), row("3")),
            130 + 130,
            "more than 65",
        ),
        (row("x").replacen("0,0,0,", "0,17,0,", 1), 2, "above 16"),
        (
            row("3").replacen("0,0,0,", "0,-1,0,", 1),
            2,
            "not a non-negative",
        ),
        (
            row("3").replacen("0,0,0,", "0,2.5,0,", 1),
            2,
            "not a non-negative",
        ),
        (row("x"), 128, "not a non-negative integer"),
        (format!("{}\n{}", row("3"), row("3")), 130, "row 1 is empty"),
        (String::new(), 0, "empty"),
        ("\n".to_string(), 0, "empty"),
    ];
    for (k, (text, want_at, want_msg)) in cases.iter().enumerate() {
        let path = dir.join(format!("d{k}.csv"));
        std::fs::write(&path, text).unwrap();
        let (file, at, msg) = data_error(contrastive::data::load_digits(&path));
        assert_eq!(file, path.display().to_string(), "{msg}");
        assert_eq!(at, *want_at as u64, "case {k}: {msg}");
        assert!(msg.contains(want_msg), "case {k}: {msg}");
        // The same text gzipped: the offset now counts decompressed bytes, and says so.
        std::fs::write(&path, gzip::compress_stored(text.as_bytes())).unwrap();
        let (file, at_gz, msg) = data_error(contrastive::data::load_digits(&path));
        assert_eq!(file, path.display().to_string(), "{msg}");
        assert_eq!(at_gz, *want_at as u64);
        assert!(msg.contains("decompressed"), "{msg}");
    }
}

#[test]
fn digits_reads_a_small_file_and_rejects_a_truncated_gzip() {
    let dir = Scratch::new("digits-gz");
    let rows = format!("{}7\r\n{}16,0\n", "1,".repeat(64), "0,".repeat(63));
    let path = dir.join("d.csv.gz");
    let gz = gzip::compress_stored(rows.as_bytes());
    std::fs::write(&path, &gz).unwrap();
    let ds = contrastive::data::load_digits(&path).unwrap();
    assert_eq!((ds.len(), ds.labels()), (2, &[7, 0][..]));
    assert_eq!((ds.item(0)[0], ds.item(1)[63]), (1.0 / 16.0, 1.0));
    // Cut inside the stored block: the offset is in the compressed file, where it ends.
    std::fs::write(&path, &gz[..50]).unwrap();
    let (file, at, msg) = data_error(contrastive::data::load_digits(&path));
    assert_eq!((file, at), (path.display().to_string(), 50), "{msg}");
    assert!(msg.contains("truncated"), "{msg}");
    let missing = contrastive::data::load_digits(dir.join("nope.csv"));
    assert!(
        matches!(&missing, Err(Error::Io { path, .. }) if path.ends_with("nope.csv")),
        "{missing:?}"
    );
}

// ---------------------------------------------------------------- IDX

fn idx_bytes(type_code: u8, dims: &[u32], values: &[u8]) -> Vec<u8> {
    let mut out = vec![0, 0, type_code, dims.len() as u8];
    dims.iter().for_each(|d| out.extend(d.to_be_bytes()));
    out.extend_from_slice(values);
    out
}

#[test]
fn idx_round_trips_raw_and_gzip() {
    let dir = Scratch::new("idx");
    let pixels: Vec<u8> = (0..18).map(|i| (i * 15) as u8).collect();
    let images = idx_bytes(8, &[3, 2, 3], &pixels);
    let labels = idx_bytes(8, &[3], &[4, 0, 9]);
    std::fs::write(dir.join("img"), &images).unwrap();
    std::fs::write(dir.join("lab"), &labels).unwrap();
    std::fs::write(dir.join("img.gz"), gzip::compress_stored(&images)).unwrap();
    std::fs::write(dir.join("lab.gz"), gzip::compress_stored(&labels)).unwrap();
    let raw = load_idx(dir.join("img"), dir.join("lab")).unwrap();
    assert_eq!(
        (raw.len(), raw.item_shape(), raw.labels()),
        (3, &[1, 2, 3][..], &[4, 0, 9][..])
    );
    assert_eq!(raw.num_classes(), 10);
    assert_eq!(raw.item(1)[2], 120.0 / 255.0);
    assert_eq!(
        load_idx(dir.join("img.gz"), dir.join("lab.gz")).unwrap(),
        raw
    );
    assert_eq!(load_idx(dir.join("img.gz"), dir.join("lab")).unwrap(), raw);
}

#[test]
fn idx_rejects_every_corruption_with_offsets() {
    let dir = Scratch::new("idx-bad");
    let pixels = vec![1u8; 18];
    let labels = dir.join("lab");
    std::fs::write(&labels, idx_bytes(8, &[3], &[1, 2, 3])).unwrap();
    let mut bad_magic = idx_bytes(8, &[3, 2, 3], &pixels);
    bad_magic[0] = 0x1e;
    let truncated = idx_bytes(8, &[3, 2, 3], &pixels[..17]);
    let cases: Vec<(Vec<u8>, u64, &str)> = vec![
        (bad_magic, 0, "magic"),
        (idx_bytes(0x0d, &[3, 2, 3], &pixels), 2, "type code"),
        (
            idx_bytes(8, &[3, 6], &pixels),
            3,
            "2 dimensions, expected 3",
        ),
        (vec![0, 0, 8, 3, 0, 0], 6, "truncated IDX header"),
        (truncated, 16 + 17, "truncated"),
        (
            idx_bytes(8, &[3, 2, 3], &[pixels.clone(), vec![0]].concat()),
            16 + 18,
            "unexpected bytes",
        ),
    ];
    for (bytes, want_at, want_msg) in cases {
        let path = dir.join("img");
        std::fs::write(&path, &bytes).unwrap();
        let (file, at, msg) = data_error(load_idx(&path, &labels));
        assert!(file.ends_with("img"), "{file}");
        assert_eq!(at, want_at, "{msg}");
        assert!(msg.contains(want_msg), "{msg}");
    }
    // Counts that disagree between the images and the labels.
    std::fs::write(dir.join("img"), idx_bytes(8, &[2, 3, 3], &pixels)).unwrap();
    let (file, at, msg) = data_error(load_idx(dir.join("img"), &labels));
    assert_eq!((file, at), (labels.display().to_string(), 4), "{msg}");
    assert!(
        msg.contains("2 images") && msg.contains("3 labels"),
        "{msg}"
    );
    // A truncated gzip stream: the offset is in the compressed file.
    let gz = gzip::compress_stored(&idx_bytes(8, &[3, 2, 3], &pixels));
    std::fs::write(dir.join("img.gz"), &gz[..30]).unwrap();
    let (file, at, msg) = data_error(load_idx(dir.join("img.gz"), &labels));
    assert_eq!(
        (file, at),
        (dir.join("img.gz").display().to_string(), 30),
        "{msg}"
    );
    let missing = load_idx(dir.join("nope"), &labels);
    assert!(matches!(missing, Err(Error::Io { .. })), "{missing:?}");
}

#[test]
fn idx_rejects_a_corrupt_labels_file_with_offsets() {
    let dir = Scratch::new("idx-bad-labels");
    let images = dir.join("img");
    std::fs::write(&images, idx_bytes(8, &[3, 2, 3], &[1u8; 18])).unwrap();
    let mut bad_magic = idx_bytes(8, &[3], &[1, 2, 3]);
    bad_magic[1] = 0x08;
    let cases: Vec<(Vec<u8>, u64, &str)> = vec![
        (bad_magic, 0, "magic"),
        (vec![0, 0], 2, "truncated IDX header"),
        (idx_bytes(0x09, &[3], &[1, 2, 3]), 2, "type code"),
        (
            idx_bytes(8, &[3, 1], &[1, 2, 3]),
            3,
            "2 dimensions, expected 1",
        ),
        (vec![0, 0, 8, 1, 0, 0], 6, "truncated IDX header"),
        (idx_bytes(8, &[3], &[1, 2]), 8 + 2, "truncated"),
        (idx_bytes(8, &[3], &[1, 2, 3, 4]), 8 + 3, "unexpected bytes"),
        (idx_bytes(8, &[2], &[1, 2]), 4, "3 images"),
        (idx_bytes(8, &[4], &[1, 2, 3, 4]), 4, "4 labels"),
    ];
    for (k, (bytes, want_at, want_msg)) in cases.into_iter().enumerate() {
        let labels = dir.join(format!("lab{k}"));
        std::fs::write(&labels, &bytes).unwrap();
        let (file, at, msg) = data_error(load_idx(&images, &labels));
        assert_eq!(file, labels.display().to_string(), "case {k}: {msg}");
        assert_eq!(at, want_at, "case {k}: {msg}");
        assert!(msg.contains(want_msg), "case {k}: {msg}");
        // Gzipped: the same offset, counted in the decompressed bytes.
        let gz = dir.join(format!("lab{k}.gz"));
        std::fs::write(&gz, gzip::compress_stored(&bytes)).unwrap();
        let (file, at, msg) = data_error(load_idx(&images, &gz));
        assert_eq!((file, at), (gz.display().to_string(), want_at), "{msg}");
        assert!(msg.contains("decompressed"), "case {k}: {msg}");
    }
    // A truncated gzip stream of labels: the offset is in the compressed file.
    let gz = gzip::compress_stored(&idx_bytes(8, &[3], &[1, 2, 3]));
    let cut = dir.join("cut.gz");
    std::fs::write(&cut, &gz[..20]).unwrap();
    let (file, at, msg) = data_error(load_idx(&images, &cut));
    assert_eq!((file, at), (cut.display().to_string(), 20), "{msg}");
    let missing = load_idx(&images, dir.join("nope"));
    assert!(
        matches!(&missing, Err(Error::Io { path, .. }) if path.ends_with("nope")),
        "{missing:?}"
    );
}

/// Reads the real Fashion-MNIST files (`apt-get install dataset-fashion-mnist`).
#[test]
#[ignore = "needs /usr/share/datasets/fashion-mnist"]
fn fashion_mnist_loads() {
    let dir = Path::new("/usr/share/datasets/fashion-mnist");
    let train = load_idx(
        dir.join("train-images-idx3-ubyte.gz"),
        dir.join("train-labels-idx1-ubyte.gz"),
    );
    let train = train.unwrap();
    assert_eq!(
        (train.len(), train.item_shape(), train.num_classes()),
        (60_000, &[1, 28, 28][..], 10)
    );
    assert_eq!(train.class_counts(), vec![6000; 10]);
    let test = load_idx(
        dir.join("t10k-images-idx3-ubyte.gz"),
        dir.join("t10k-labels-idx1-ubyte.gz"),
    );
    assert_eq!(test.unwrap().len(), 10_000);
}

// ---------------------------------------------------------------- CIFAR-10

fn cifar_record(label: u8, fill: impl Fn(usize) -> u8) -> Vec<u8> {
    std::iter::once(label).chain((0..3072).map(fill)).collect()
}

#[test]
fn cifar_reads_records_and_rejects_corruption() {
    let dir = Scratch::new("cifar");
    let a = [
        cifar_record(3, |i| (i % 256) as u8),
        cifar_record(9, |i| (i / 1024) as u8 * 100),
    ]
    .concat();
    std::fs::write(dir.join("a.bin"), &a).unwrap();
    std::fs::write(dir.join("b.bin"), cifar_record(0, |_| 255)).unwrap();
    let ds = load_cifar10(&[dir.join("a.bin"), dir.join("b.bin")]).unwrap();
    assert_eq!(
        (ds.len(), ds.item_shape(), ds.labels()),
        (3, &[3, 32, 32][..], &[3, 9, 0][..])
    );
    assert_eq!(ds.item(0)[300], 44.0 / 255.0);
    // Record 1 has its planes at 0, 100, 200: channel-major layout.
    assert_eq!(
        (ds.item(1)[1023], ds.item(1)[1024], ds.item(1)[3071]),
        (0.0, 100.0 / 255.0, 200.0 / 255.0)
    );
    assert!(ds.item(2).iter().all(|&v| v == 1.0));

    // A partial last record: the error is at the end of the file and names the record's start.
    let short = dir.join("short.bin");
    std::fs::write(&short, &a[..3073 + 100]).unwrap();
    let (file, at, msg) = data_error(load_cifar10(&[&short]));
    assert_eq!((file, at), (short.display().to_string(), 3173), "{msg}");
    assert!(
        msg.contains("truncated record 1") && msg.contains("byte 3073"),
        "{msg}"
    );
    let label = dir.join("label.bin");
    std::fs::write(&label, [a.clone(), cifar_record(10, |_| 0)].concat()).unwrap();
    let (file, at, msg) = data_error(load_cifar10(&[&label]));
    assert_eq!((file, at), (label.display().to_string(), 2 * 3073), "{msg}");
    assert!(msg.contains("record 2: label 10"), "{msg}");

    for i in 1..=5 {
        std::fs::write(
            dir.join(format!("data_batch_{i}.bin")),
            cifar_record(i, |_| i),
        )
        .unwrap();
    }
    std::fs::write(dir.join("test_batch.bin"), &a).unwrap();
    let (train, test) = load_cifar10_dir(&dir).unwrap();
    assert_eq!((train.labels(), test.len()), (&[1, 2, 3, 4, 5][..], 2));
}

#[test]
fn cifar_rejects_empty_short_and_mislabelled_files_naming_them() {
    let dir = Scratch::new("cifar-bad");
    let good = dir.join("good.bin");
    let record = cifar_record(4, |i| (i % 7) as u8);
    std::fs::write(&good, &record).unwrap();
    // No files at all is a caller error, not a corrupt file.
    let none: [&Path; 0] = [];
    assert!(
        matches!(load_cifar10(&none), Err(Error::InvalidInput { .. })),
        "no paths"
    );
    let cases: Vec<(Vec<u8>, u64, &str)> = vec![
        (Vec::new(), 0, "empty"),
        (
            record[..100].to_vec(),
            100,
            "truncated record 0 (starting at byte 0)",
        ),
        (
            [record.clone(), record[..3072].to_vec()].concat(),
            3073 + 3072,
            "truncated record 1 (starting at byte 3073)",
        ),
        (
            [record.clone(), cifar_record(255, |_| 0)].concat(),
            3073,
            "label 255",
        ),
    ];
    for (k, (bytes, want_at, want_msg)) in cases.into_iter().enumerate() {
        // The bad file second, after a good one: the error names the bad one.
        let bad = dir.join(format!("bad{k}.bin"));
        std::fs::write(&bad, &bytes).unwrap();
        let (file, at, msg) = data_error(load_cifar10(&[&good, &bad]));
        assert_eq!((file, at), (bad.display().to_string(), want_at), "{msg}");
        assert!(msg.contains(want_msg), "case {k}: {msg}");
        // Gzipped, as the IDX loader allows: same offset, in the decompressed bytes.
        let gz = dir.join(format!("bad{k}.bin.gz"));
        std::fs::write(&gz, gzip::compress_stored(&bytes)).unwrap();
        let (file, at, msg) = data_error(load_cifar10(&[&gz]));
        assert_eq!((file, at), (gz.display().to_string(), want_at), "{msg}");
        assert!(msg.contains("decompressed"), "case {k}: {msg}");
    }
    // A gzip-compressed batch loads like the raw one; a truncated stream is reported at the
    // offset in the compressed file.
    let gz = dir.join("good.bin.gz");
    let compressed = gzip::compress_stored(&[record.clone(), record.clone()].concat());
    std::fs::write(&gz, &compressed).unwrap();
    let from_gz = load_cifar10(&[&gz]).unwrap();
    assert_eq!(from_gz, load_cifar10(&[&good, &good]).unwrap());
    std::fs::write(&gz, &compressed[..1000]).unwrap();
    let (file, at, msg) = data_error(load_cifar10(&[&gz]));
    assert_eq!((file, at), (gz.display().to_string(), 1000), "{msg}");

    // The standard folder with data_batch_3.bin missing, then with test_batch.bin missing.
    let batches = Scratch::new("cifar-dir");
    for name in [
        "data_batch_1",
        "data_batch_2",
        "data_batch_4",
        "data_batch_5",
    ] {
        std::fs::write(batches.join(format!("{name}.bin")), &record).unwrap();
    }
    std::fs::write(batches.join("test_batch.bin"), &record).unwrap();
    let missing = load_cifar10_dir(&batches);
    assert!(
        matches!(&missing, Err(Error::Io { path, .. }) if path.ends_with("data_batch_3.bin")),
        "{missing:?}"
    );
    std::fs::write(batches.join("data_batch_3.bin"), &record).unwrap();
    std::fs::remove_file(batches.join("test_batch.bin")).unwrap();
    let missing = load_cifar10_dir(&batches);
    assert!(
        matches!(&missing, Err(Error::Io { path, .. }) if path.ends_with("test_batch.bin")),
        "{missing:?}"
    );
}

// ---------------------------------------------------------------- npy

#[test]
fn npy_round_trips_each_type_and_matches_numpy_layout() {
    let dir = Scratch::new("npy");
    let p = dir.join("a.npy");
    npy::write_f64(&p, &[2, 3], &[1.0, -2.5, 3.0, 1e-300, f64::MAX, 0.0]).unwrap();
    let a = npy::read(&p).unwrap();
    assert_eq!(a.shape, vec![2, 3]);
    assert_eq!(
        a.data,
        npy::NpyData::F64(vec![1.0, -2.5, 3.0, 1e-300, f64::MAX, 0.0])
    );
    // NumPy 1.x/2.x writes exactly this: a 128-byte preamble, header padded with spaces.
    let bytes = std::fs::read(&p).unwrap();
    let header = "{'descr': '<f8', 'fortran_order': False, 'shape': (2, 3), }";
    assert_eq!(&bytes[..10], b"\x93NUMPY\x01\x00\x76\x00");
    assert_eq!(&bytes[10..10 + header.len()], header.as_bytes());
    assert_eq!((bytes.len(), bytes[127]), (128 + 48, b'\n'));

    npy::write_f32(&p, &[4], &[0.5, 1.5, -0.0, 7.0]).unwrap();
    assert_eq!(
        npy::read(&p).unwrap().data,
        npy::NpyData::F32(vec![0.5, 1.5, -0.0, 7.0])
    );
    npy::write_i64(&p, &[], &[-42]).unwrap();
    let s = npy::read(&p).unwrap();
    assert_eq!((s.shape.len(), s.data), (0, npy::NpyData::I64(vec![-42])));
    npy::write(&p, &[2, 0], &[] as &[i32]).unwrap();
    assert_eq!(npy::read(&p).unwrap().shape, vec![2, 0]);
    assert!(
        npy::write_f32(&p, &[3], &[1.0]).is_err(),
        "shape and data disagree"
    );

    npy::write_f32(dir.join("x.npy"), &[3, 2], &[0.0, 1.0, 2.0, 3.0, 4.0, 5.0]).unwrap();
    npy::write_i64(dir.join("y.npy"), &[3], &[2, 0, 1]).unwrap();
    let ds = load_npy_dataset(dir.join("x.npy"), dir.join("y.npy")).unwrap();
    assert_eq!(
        (ds.item_shape(), ds.item(2), ds.num_classes()),
        (&[2][..], &[4.0, 5.0][..], 3)
    );
}

/// A `.npy` file with `header` (padded as NumPy does) and `data_len` zero bytes of data.
fn npy_with_header(header: &str, data_len: usize) -> Vec<u8> {
    let mut h = header.to_string();
    while !(10 + h.len() + 1).is_multiple_of(64) {
        h.push(' ');
    }
    h.push('\n');
    let mut out = b"\x93NUMPY\x01\x00".to_vec();
    out.extend((h.len() as u16).to_le_bytes());
    out.extend(h.as_bytes());
    out.extend(vec![0u8; data_len]);
    out
}

/// The byte offset of `needle` in a file made by [`npy_with_header`] from `header`.
fn npy_at(header: &str, needle: &str) -> Option<u64> {
    Some(10 + header.find(needle).expect("needle in header") as u64)
}

#[test]
fn npy_rejects_malformed_files_clearly() {
    let ok = |descr: &str, shape: &str| {
        format!("{{'descr': '{descr}', 'fortran_order': False, 'shape': {shape}, }}")
    };
    let with =
        |descr: &str, shape: &str, data_len: usize| npy_with_header(&ok(descr, shape), data_len);
    // In `ok(..)` the descr value's quote is at header offset 10, so at file offset 20.
    let descr_at = Some(20);
    let v2 = |header_len: u32| {
        let mut b = b"\x93NUMPY\x02\x00".to_vec();
        b.extend(header_len.to_le_bytes());
        b
    };
    let cases: Vec<(Vec<u8>, &str, Option<u64>)> = vec![
        (b"NUMPY\x01\x00".to_vec(), "magic", Some(0)),
        (b"\x89PNG\r\n\x1a\n\0\0\0\0".to_vec(), "magic", Some(0)),
        (b"\x93NUMP".to_vec(), "magic", Some(0)),
        (b"\x93NUMPY\x01".to_vec(), "version bytes", Some(7)),
        (
            b"\x93NUMPY\x01\x00\x76".to_vec(),
            "truncated header length",
            Some(9),
        ),
        (v2(64)[..11].to_vec(), "truncated header length", Some(11)),
        (with("<f8", "(2,)", 8), "truncated data", Some(128 + 8)),
        (with("<f4", "(3, 2)", 0), "truncated data", Some(128)),
        (
            with("<i4", "(3, 2)", 23),
            "needs 24 bytes after the header, found 23",
            Some(128 + 23),
        ),
        (with("<f8", "(2,)", 24), "trailing bytes", Some(128 + 16)),
        (
            with(">f8", "(2,)", 16),
            "unsupported dtype \">f8\"",
            descr_at,
        ),
        (
            with(">f4", "(2,)", 8),
            "big-endian data is not supported: save a.astype('<f4')",
            descr_at,
        ),
        (
            with("<f2", "(2,)", 4),
            "unsupported dtype \"<f2\"",
            descr_at,
        ),
        (
            with("<c8", "(2,)", 16),
            "unsupported dtype \"<c8\"",
            descr_at,
        ),
        (
            with("|u1", "(2,)", 2),
            "unsupported dtype \"|u1\"",
            descr_at,
        ),
        (
            with("<f8", "(4294967296, 4294967296, 4294967296)", 0),
            "too large",
            npy_at(&ok("<f8", "()"), "()"),
        ),
        (
            with("<i8", "(2, x)", 16),
            "bad shape entry",
            npy_at(&ok("<i8", "(2, x)"), "x"),
        ),
        (
            with("<i8", "(-2,)", 16),
            "bad shape entry",
            npy_at(&ok("<i8", "(-2,)"), "-2"),
        ),
        (with("<i8", "(2", 16), "malformed", None),
        (
            npy_with_header(
                "{'descr': '<f8', 'fortran_order': True, 'shape': (2,), }",
                16,
            ),
            "fortran_order True",
            Some(10 + 34),
        ),
        (
            npy_with_header("{'descr': '<f8', 'fortran_order': 1, 'shape': (2,), }", 16),
            "fortran_order must be True or False",
            Some(10 + 34),
        ),
        (
            npy_with_header("{'descr': '<f8', 'shape': (2,), }", 16),
            "needs 'descr'",
            None,
        ),
        (
            npy_with_header(
                "{'descr': '<f8', 'descr': '<f8', 'fortran_order': False, 'shape': (2,)}",
                16,
            ),
            "duplicate",
            Some(10 + 17),
        ),
        (
            npy_with_header(
                "{'descr': '<f8', 'fortran_order': False, 'shape': (2,), 'x': 1}",
                16,
            ),
            "unexpected key",
            npy_at(
                "{'descr': '<f8', 'fortran_order': False, 'shape': (2,), 'x': 1}",
                "'x'",
            ),
        ),
        (
            b"\x93NUMPY\x01\x00\xff\x00{'descr'".to_vec(),
            "truncated header",
            Some(18),
        ),
        // Version 2.0: a 4-byte header length, here past the end of the file.
        (
            [v2(1 << 20), b"{'descr'".to_vec()].concat(),
            "truncated header: 1048576 bytes",
            Some(20),
        ),
        (b"\x93NUMPY\x09\x00\x10\x00".to_vec(), "version 9", Some(6)),
        (b"\x93NUMPY\x00\x00\x10\x00".to_vec(), "version 0", Some(6)),
    ];
    for (k, (bytes, want, want_at)) in cases.into_iter().enumerate() {
        let (file, at, msg) = data_error(npy::parse(&bytes, "m.npy"));
        assert_eq!(file, "m.npy");
        assert!(msg.contains(want), "case {k}: wanted {want:?} in {msg:?}");
        if let Some(want_at) = want_at {
            assert_eq!(at, want_at, "case {k}: {msg}");
        }
    }
    // Through `read`, the error names the file on disk.
    let dir = Scratch::new("npy-bad");
    let path = dir.join("t.npy");
    std::fs::write(&path, with("<f8", "(2,)", 8)).unwrap();
    let (file, at, _) = data_error(npy::read(&path));
    assert_eq!((file, at), (path.display().to_string(), 136));
    // A version 2.0 file (as NumPy writes for headers over 64 KiB) reads like version 1.0.
    let mut header = ok("<i4", "(2,)");
    while !(12 + header.len() + 1).is_multiple_of(64) {
        header.push(' ');
    }
    header.push('\n');
    let mut bytes = v2(header.len() as u32);
    bytes.extend(header.as_bytes());
    bytes.extend([7, 0, 0, 0, 0xff, 0xff, 0xff, 0xff]);
    let a = npy::parse(&bytes, "v2.npy").unwrap();
    assert_eq!((a.shape, a.data), (vec![2], npy::NpyData::I32(vec![7, -1])));
}

#[test]
fn npy_dataset_rejects_mismatched_files_naming_file_and_offset() {
    let dir = Scratch::new("npy-dataset");
    let (x, y) = (dir.join("x.npy"), dir.join("y.npy"));
    let name = |p: &Path| p.display().to_string();
    // The offset of the first occurrence of `needle` in the file at `p`.
    let at = |p: &Path, needle: &str| {
        let bytes = std::fs::read(p).unwrap();
        bytes
            .windows(needle.len())
            .position(|w| w == needle.as_bytes())
            .expect("needle in file") as u64
    };
    npy::write_f32(&x, &[3, 2], &[0.0, 1.0, 2.0, 3.0, 4.0, 5.0]).unwrap();
    // Int32 labels are accepted as well as int64.
    npy::write(&y, &[3], &[1i32, 0, 4]).unwrap();
    let ds = load_npy_dataset(&x, &y).unwrap();
    assert_eq!((ds.labels(), ds.num_classes()), (&[1, 0, 4][..], 5));

    // Labels that do not match the features: the labels file, at its shape.
    for (shape, values) in [(vec![2], vec![0i64, 1]), (vec![3, 1], vec![0, 1, 2])] {
        npy::write_i64(&y, &shape, &values).unwrap();
        let (file, off, msg) = data_error(load_npy_dataset(&x, &y));
        assert_eq!((file, off), (name(&y), at(&y, "(")), "{msg}");
        assert!(msg.contains("3 rows") && msg.contains(&name(&x)), "{msg}");
    }
    npy::write_i64(&y, &[], &[0]).unwrap();
    let (file, off, msg) = data_error(load_npy_dataset(&x, &y));
    assert_eq!((file, off), (name(&y), at(&y, "()")), "{msg}");
    // Float labels: the labels file, at its dtype.
    npy::write_f32(&y, &[3], &[0.0, 1.0, 2.0]).unwrap();
    let (file, off, msg) = data_error(load_npy_dataset(&x, &y));
    assert_eq!((file, off), (name(&y), at(&y, "'<f4'")), "{msg}");
    assert!(msg.contains("integer"), "{msg}");
    // A negative label: at its value (int64, so label 1 starts 8 bytes into the data).
    npy::write_i64(&y, &[3], &[2, -1, 1]).unwrap();
    let (file, off, msg) = data_error(load_npy_dataset(&x, &y));
    assert_eq!((file, off), (name(&y), 128 + 8), "{msg}");
    assert!(msg.contains("label 1 is negative (-1)"), "{msg}");
    npy::write(&y, &[3], &[0i32, 1, -7]).unwrap();
    let (_, off, _) = data_error(load_npy_dataset(&x, &y));
    assert_eq!(off, 128 + 8);
    // An ID-like label (10¹²) would make per-class work allocate 10¹² slots: at its value.
    npy::write_i64(&y, &[3], &[0, 1, 1_000_000_000_000]).unwrap();
    let (file, off, msg) = data_error(load_npy_dataset(&x, &y));
    assert_eq!((file, off), (name(&y), 128 + 16), "{msg}");
    assert!(msg.contains("label 2 is 1000000000000"), "{msg}");

    // Features of rank 0 or 1, or with empty items: the features file, at its shape.
    npy::write_i64(&y, &[3], &[0, 1, 2]).unwrap();
    npy::write_f32(&x, &[3], &[0.0, 1.0, 2.0]).unwrap();
    let (file, off, msg) = data_error(load_npy_dataset(&x, &y));
    assert_eq!((file, off), (name(&x), at(&x, "(3,)")), "{msg}");
    assert!(msg.contains("(N, 1)"), "{msg}");
    npy::write_f64(&x, &[], &[1.0]).unwrap();
    let (file, off, _) = data_error(load_npy_dataset(&x, &y));
    assert_eq!((file, off), (name(&x), at(&x, "()")));
    npy::write_f32(&x, &[3, 0], &[]).unwrap();
    let (file, off, msg) = data_error(load_npy_dataset(&x, &y));
    assert_eq!((file, off), (name(&x), at(&x, "(3, 0)")), "{msg}");
    // A corrupt features file is named as such.
    std::fs::write(&x, b"not numpy at all").unwrap();
    let (file, off, _) = data_error(load_npy_dataset(&x, &y));
    assert_eq!((file, off), (name(&x), 0));

    // Missing files: an I/O error with the path.
    npy::write_f32(&x, &[3, 2], &[0.0; 6]).unwrap();
    let missing = load_npy_dataset(&x, dir.join("no_labels.npy"));
    assert!(
        matches!(&missing, Err(Error::Io { path, .. }) if path.ends_with("no_labels.npy")),
        "{missing:?}"
    );
    let missing = load_npy_dataset(dir.join("no_features.npy"), &y);
    assert!(
        matches!(&missing, Err(Error::Io { path, .. }) if path.ends_with("no_features.npy")),
        "{missing:?}"
    );
}

// ---------------------------------------------------------------- synthetic

#[test]
fn synthetic_clusters_are_separated_as_configured() {
    let config = SyntheticConfig {
        coarse_classes: 4,
        subclasses: 3,
        dim: 256,
        coarse_scale: 6.0,
        subclass_scale: 2.0,
        noise: 0.5,
        seed: 7,
    };
    let model = LatentSubclasses::new(config).unwrap();
    let ds = model.sample(100, 1).unwrap();
    assert_eq!(
        (ds.len(), ds.num_classes(), ds.num_fine_classes()),
        (1200, 4, 12)
    );
    assert_eq!(
        (
            ds.labels()[299],
            ds.labels()[300],
            ds.fine_labels().unwrap()[250]
        ),
        (0, 1, 2)
    );
    let mean_of = |label: &dyn Fn(usize) -> bool| -> Vec<f64> {
        let rows: Vec<usize> = (0..ds.len()).filter(|&i| label(i)).collect();
        (0..256)
            .map(|d| {
                rows.iter().map(|&i| f64::from(ds.item(i)[d])).sum::<f64>() / rows.len() as f64
            })
            .collect()
    };
    let dist = |a: &[f64], b: &[f64]| {
        a.iter()
            .zip(b)
            .map(|(x, y)| (x - y).powi(2))
            .sum::<f64>()
            .sqrt()
    };
    let fine = ds.fine_labels().unwrap();
    let class_means: Vec<Vec<f64>> = (0..4).map(|k| mean_of(&|i| ds.labels()[i] == k)).collect();
    let sub_means: Vec<Vec<f64>> = (0..12).map(|j| mean_of(&|i| fine[i] == j)).collect();
    for a in 0..4 {
        for b in 0..a {
            // √2·6 ≈ 8.5 apart in expectation; in 256 dims a distance is within ±15% of it with
            // overwhelming probability, and the subclass offsets move class means by ~2/√3 only.
            let d = dist(&class_means[a], &class_means[b]);
            assert!(
                (6.5..10.5).contains(&d),
                "class means {a},{b} are {d:.2} apart"
            );
        }
    }
    for (j, sub_mean) in sub_means.iter().enumerate() {
        // Subclass means match the generator's centres up to sampling noise: 0.5·√(256/100) = 0.8.
        let d = dist(sub_mean, &model.subclass_centres()[j]);
        assert!(d < 1.1, "subclass {j} mean is {d:.2} from its centre");
        // Offsets from the coarse centre have norm ≈ subclass_scale = 2 (±25% in 256 dims).
        let off = dist(&model.subclass_centres()[j], &model.coarse_centres()[j / 3]);
        assert!((1.5..2.5).contains(&off), "subclass {j} offset {off:.2}");
    }
    // The spread within a subclass is the noise σ = 0.5: 307,200 deviations give a standard
    // error of 0.0006, and measuring from the sample means shrinks it by 0.5%; ±0.015 holds both.
    let var: f64 = (0..ds.len())
        .flat_map(|i| (0..256).map(move |d| (i, d)))
        .map(|(i, d)| (f64::from(ds.item(i)[d]) - sub_means[fine[i]][d]).powi(2))
        .sum::<f64>()
        / (ds.len() * 256) as f64;
    assert!((var.sqrt() - 0.5).abs() < 0.015, "noise std {}", var.sqrt());
    // Same centres, new points for another seed; bad configurations are errors.
    assert_ne!(model.sample(2, 2).unwrap(), model.sample(2, 3).unwrap());
    let bad = SyntheticConfig {
        subclasses: 0,
        ..SyntheticConfig::default()
    };
    assert!(LatentSubclasses::new(bad).is_err());
}

// ---------------------------------------------------------------- dataset

#[test]
fn dataset_subset_split_coarsen_and_validation() {
    let ds = Dataset::new(
        (0..12).map(|v| v as f32).collect(),
        vec![2],
        vec![0, 1, 2, 3, 4, 5],
        6,
    )
    .unwrap();
    let sub = ds.subset(&[5, 0, 5]).unwrap();
    assert_eq!(
        (sub.data(), sub.labels()),
        (&[10., 11., 0., 1., 10., 11.][..], &[5, 0, 5][..])
    );
    assert!(matches!(
        ds.subset(&[6]),
        Err(Error::IndexOutOfRange { .. })
    ));
    let (train, test) = ds.split(|i| i % 3 == 0);
    assert_eq!(
        (train.labels(), test.labels()),
        (&[1, 2, 4, 5][..], &[0, 3][..])
    );
    let (a, b) = ds.split_random(0.5, 3).unwrap();
    assert_eq!((a.len(), b.len()), (3, 3));
    let coarse = ds.coarsen(&[0, 0, 0, 1, 1, 1]).unwrap();
    assert_eq!(
        (coarse.labels(), coarse.fine_labels()),
        (&[0, 0, 0, 1, 1, 1][..], Some(&[0, 1, 2, 3, 4, 5][..]))
    );
    assert_eq!(coarse.fine_dataset().unwrap().labels(), ds.labels());
    assert!(
        Dataset::new(vec![0.0; 5], vec![2], vec![0, 1], 2).is_err(),
        "5 values, 2 items of 2"
    );
    assert!(
        Dataset::new(vec![0.0; 4], vec![2], vec![0, 2], 2).is_err(),
        "label 2 of 2 classes"
    );
    assert_eq!(ds.batch_tensor(&[1, 2]).unwrap().dims(), &[2, 2]);
}

// ---------------------------------------------------------------- augmentations

const D5: ImageDims = ImageDims { c: 1, h: 5, w: 5 };

/// A 5×5 image with a single bright pixel at (row 2, column 3) on a dim background.
fn dot() -> Vec<f32> {
    let mut img = vec![0.25; 25];
    img[2 * 5 + 3] = 1.0;
    img
}

#[test]
fn shift_moves_pixels_with_zero_fill() {
    let mut img = dot();
    transforms::translate(&mut img, D5, 1, -2);
    assert_eq!(
        img[3 * 5 + 1],
        1.0,
        "the dot moved one row down and two columns left"
    );
    assert!(img[..5].iter().all(|&v| v == 0.0), "the top row is vacated");
    assert!(
        (0..5).all(|y| img[y * 5 + 3] == 0.0 && img[y * 5 + 4] == 0.0),
        "right columns vacated"
    );
    assert_eq!(
        img.iter().filter(|&&v| v == 0.25).count(),
        11,
        "4×3 background minus the dot"
    );
    // `shift:1` draws each of the 9 offsets in {−1, 0, 1}² and only those.
    let aug = Augment::parse("shift:1").unwrap();
    let mut seen = std::collections::BTreeSet::new();
    let mut rng = StdRng::seed_from_u64(0);
    for _ in 0..200 {
        let mut img = dot();
        aug.apply(&mut img, &[1, 5, 5], &mut rng).unwrap();
        let at = img.iter().position(|&v| v == 1.0).unwrap();
        seen.insert((at / 5) as i32 * 10 + (at % 5) as i32);
    }
    let expected: std::collections::BTreeSet<i32> = (1..=3)
        .flat_map(|y| (2..=4).map(move |x| y * 10 + x))
        .collect();
    assert_eq!(seen, expected);
}

#[test]
fn pixel_drop_rate_and_noise_std_match_their_parameters() {
    let n = 100_000;
    let mut rng = StdRng::seed_from_u64(1);
    let mut ones = vec![1.0f32; n];
    Augment::parse("pixel_drop:0.1")
        .unwrap()
        .apply(&mut ones, &[n], &mut rng)
        .unwrap();
    let dropped = ones.iter().filter(|&&v| v == 0.0).count() as f64;
    // Binomial(n, 0.1): standard deviation √(n·0.1·0.9) ≈ 95; allow 5 of them.
    assert!(
        (dropped - 0.1 * n as f64).abs() < 5.0 * (n as f64 * 0.09).sqrt(),
        "{dropped}"
    );
    assert!(
        ones.iter().all(|&v| v == 0.0 || v == 1.0),
        "kept pixels are untouched"
    );

    let mut zeros = vec![0.0f32; n];
    Augment::parse("noise:0.3")
        .unwrap()
        .apply(&mut zeros, &[n], &mut rng)
        .unwrap();
    let mean = zeros.iter().map(|&v| f64::from(v)).sum::<f64>() / n as f64;
    let std = (zeros
        .iter()
        .map(|&v| (f64::from(v) - mean).powi(2))
        .sum::<f64>()
        / n as f64)
        .sqrt();
    // Standard errors: mean 0.3/√n ≈ 0.001, std 0.3/√(2n) ≈ 0.0007; bounds are > 5 SE.
    assert!(
        mean.abs() < 0.005 && (std - 0.3).abs() < 0.004,
        "mean {mean}, std {std}"
    );
    assert!(zeros.iter().any(|&v| v < 0.0), "no clipping");
}

#[test]
fn flip_crop_erase_and_jitter_do_what_they_say() {
    let mut img = dot();
    transforms::hflip(&mut img, D5);
    assert_eq!(img[2 * 5 + 1], 1.0);
    // A full-size crop is the identity; a 2×2 crop of a ramp is resized bilinearly.
    let ramp: Vec<f32> = (0..16).map(|i| (i % 4) as f32).collect();
    let d4 = ImageDims { c: 1, h: 4, w: 4 };
    let mut rng = StdRng::seed_from_u64(2);
    let same = transforms::random_resized_crop(&ramp, d4, (4, 4), (1.0, 1.0), (1.0, 1.0), &mut rng);
    assert_eq!(same, ramp);
    let zoom = transforms::crop_resize(&ramp, d4, Region::new(0, 1, 2, 2), (4, 4));
    // Columns 1 and 2 stretched over four: source x = clamp((o + 0.5)/2 − 0.5) = 0, 0.25, 0.75, 1.
    assert_eq!(&zoom[..4], &[1.0, 1.25, 1.75, 2.0]);
    // Down to 2×3: source x = clamp((o + 0.5)·4/3 − 0.5) = 0.1667, 1.5, 2.8333; rows alike.
    let small = transforms::crop_resize(&ramp, d4, Region::all(d4), (2, 3));
    let expected = [1.0 / 6.0, 1.5, 17.0 / 6.0];
    assert_eq!(small.len(), 6);
    for (got, want) in small.iter().zip(expected.iter().chain(&expected)) {
        assert!((got - want).abs() < 1e-6, "{small:?}");
    }
    let mut erased = vec![1.0f32; 3 * 16 * 16];
    let d16 = ImageDims { c: 3, h: 16, w: 16 };
    transforms::random_erase(&mut erased, d16, 1.0, (0.1, 0.2), (0.5, 2.0), &mut rng);
    let zeros = erased.iter().filter(|&&v| v == 0.0).count();
    // 10–20% of 256 pixels (25.6–51.2) in each of 3 channels; rounding each side of the box
    // by up to half a pixel moves the area to between about 20 and 60.
    assert!(
        (3 * 20..=3 * 60).contains(&zeros) && zeros % 3 == 0,
        "{zeros} erased"
    );
    let mut jit: Vec<f32> = (0..25).map(|i| i as f32 / 25.0).collect();
    let orig = jit.clone();
    transforms::jitter(&mut jit, 0.5, 0.0, &mut rng);
    let factor = jit[24] / orig[24];
    assert!(
        (0.5..=1.5).contains(&factor)
            && jit
                .iter()
                .zip(&orig)
                .all(|(a, b)| (a - b * factor).abs() < 1e-6)
    );
    let mut con = orig.clone();
    transforms::jitter(&mut con, 0.0, 0.5, &mut rng);
    let mean = |v: &[f32]| v.iter().sum::<f32>() / 25.0;
    assert!(
        (mean(&con) - mean(&orig)).abs() < 1e-5,
        "contrast keeps the mean"
    );
}

#[test]
fn sized_views_resample_the_crop_straight_to_the_view_size() {
    // A horizontal ramp 0..8 on an 8×8 image, two channels (the second offset by 100).
    let img: Vec<f32> = (0..2 * 64)
        .map(|i| (i % 8) as f32 + 100.0 * (i / 64) as f32)
        .collect();
    let mut rng = StdRng::seed_from_u64(3);
    // A full-image crop to 4×4 is one bilinear resampling: source x = (o + 0.5)·2 − 0.5.
    let full = Augment::parse("crop:1:1:1:1").unwrap();
    let view = full
        .apply_sized(&img, &[2, 8, 8], (4, 4), &mut rng)
        .unwrap();
    assert_eq!(view.len(), 2 * 16);
    assert_eq!(&view[..4], &[0.5, 2.5, 4.5, 6.5]);
    assert_eq!(&view[16..20], &[100.5, 102.5, 104.5, 106.5]);
    // Without a crop the whole image is resized first, then the steps run at the view size:
    // the flip mirrors the 4-wide rows.
    let flip = Augment::parse("flip:1").unwrap();
    let flipped = flip
        .apply_sized(&img, &[2, 8, 8], (4, 4), &mut rng)
        .unwrap();
    assert_eq!(&flipped[..4], &[6.5, 4.5, 2.5, 0.5]);
    assert_eq!(
        Augment::default()
            .apply_sized(&img, &[2, 8, 8], (4, 4), &mut rng)
            .unwrap(),
        view
    );
    // Random crops at a non-square view size keep the ramp increasing along each row, inside
    // the image's range.
    let crop = Augment::parse("crop:0.3").unwrap();
    for _ in 0..50 {
        let v = crop
            .apply_sized(&img, &[2, 8, 8], (3, 5), &mut rng)
            .unwrap();
        assert_eq!(v.len(), 2 * 15);
        for row in v[..15].chunks(5) {
            assert!(row.windows(2).all(|p| p[0] <= p[1]), "{row:?}");
            assert!(row.iter().all(|x| (0.0..=7.0).contains(x)), "{row:?}");
        }
    }
    // Same size: `apply_sized` equals the in-place `apply` on the same draws.
    let recipe = Augment::parse("crop:0.3,flip,jitter:0.4:0.4,noise:0.1").unwrap();
    let sized = recipe
        .apply_sized(&img, &[2, 8, 8], (8, 8), &mut StdRng::seed_from_u64(9))
        .unwrap();
    let mut in_place = img.clone();
    recipe
        .apply(&mut in_place, &[2, 8, 8], &mut StdRng::seed_from_u64(9))
        .unwrap();
    assert_eq!(sized, in_place);
    // Bad input: a vector item, a zero side, a wrong length.
    assert!(is_invalid_or_rank(full.apply_sized(
        &img,
        &[128],
        (4, 4),
        &mut rng
    )));
    assert!(is_invalid_or_rank(full.apply_sized(
        &img,
        &[2, 8, 8],
        (0, 4),
        &mut rng
    )));
    assert!(is_invalid_or_rank(full.apply_sized(
        &img[..100],
        &[2, 8, 8],
        (4, 4),
        &mut rng
    )));
}

fn is_invalid_or_rank<T: std::fmt::Debug>(r: contrastive::Result<T>) -> bool {
    matches!(r, Err(Error::InvalidInput { .. } | Error::BadRank { .. }))
}

#[test]
fn augment_strings_parse_print_and_validate() {
    let recipe = Augment::parse("shift:1,pixel_drop:0.1,noise:0.1").unwrap();
    assert_eq!(recipe, Augment::digits_simclr());
    assert_eq!(recipe.to_string(), "shift:1,pixel_drop:0.1,noise:0.1");
    let all =
        Augment::parse("crop, flip, shift:2, noise:0.05, erase:0.25, jitter:0.4:0.2, mask:0.3")
            .unwrap();
    assert_eq!(
        all.steps[0],
        Step::Crop {
            scale: (0.08, 1.0),
            ratio: (0.75, 4.0 / 3.0)
        }
    );
    assert_eq!(all.to_string().parse::<Augment>().unwrap(), all);
    assert!(Augment::parse("none").unwrap().is_identity());
    for bad in [
        "blur:1",
        "noise:x",
        "flip:1.5",
        "shift:0.5",
        "crop:0.5:0.2",
        "jitter:1:2:3",
        "noise:-1",
    ] {
        assert!(Augment::parse(bad).is_err(), "{bad} should be rejected");
    }
    assert!(
        Augment::parse("flip").unwrap().check(&[64]).is_err(),
        "flip needs an image"
    );
    assert!(Augment::parse("noise,mask").unwrap().check(&[64]).is_ok());
}

// ---------------------------------------------------------------- loader

/// `n` items of shape [1, 2, 2] whose values encode their index; labels `i % classes`.
fn indexed(n: usize, classes: usize) -> Dataset {
    let data = (0..n).flat_map(|i| [i as f32; 4]).collect();
    Dataset::new(
        data,
        vec![1, 2, 2],
        (0..n).map(|i| i % classes).collect(),
        classes,
    )
    .unwrap()
}

fn config(batch_size: usize, augment: &str) -> LoaderConfig {
    LoaderConfig {
        batch_size,
        views: 3,
        augment: Augment::parse(augment).unwrap(),
        seed: 11,
        ..LoaderConfig::default()
    }
}

#[test]
fn batches_are_view_major_and_cover_the_epoch() {
    let loader = Loader::new(indexed(10, 2), config(4, "none")).unwrap();
    let batches: Vec<_> = loader.epoch(0).collect::<Result<_, _>>().unwrap();
    assert_eq!(
        batches.iter().map(|b| b.batch_size()).collect::<Vec<_>>(),
        vec![4, 4, 2]
    );
    let mut seen: Vec<usize> = batches.iter().flat_map(|b| b.indices.clone()).collect();
    seen.sort();
    assert_eq!(seen, (0..10).collect::<Vec<_>>());
    let b = &batches[0];
    assert_eq!(b.views.dims(), &[12, 1, 2, 2]);
    for v in 0..3 {
        for (i, &idx) in b.indices.iter().enumerate() {
            assert_eq!(
                b.views.data()[(v * 4 + i) * 4],
                idx as f32,
                "row v·B + i is view v of item i"
            );
        }
    }
    assert_eq!(
        b.labels,
        b.indices.iter().map(|i| i % 2).collect::<Vec<_>>()
    );
    assert_eq!(b.view(1).unwrap().data(), &b.views.data()[16..32]);
    let dropping = Loader::new(
        indexed(10, 2),
        LoaderConfig {
            drop_last: true,
            ..config(4, "none")
        },
    )
    .unwrap();
    assert_eq!(dropping.epoch(0).count(), 2);
    let seq = Loader::new(
        indexed(10, 2),
        LoaderConfig {
            sampler: Sampler::Sequential,
            ..config(4, "none")
        },
    );
    assert_eq!(seq.unwrap().epoch_indices(5)[1], vec![4, 5, 6, 7]);
    assert!(Loader::new(indexed(10, 2), config(0, "none")).is_err());
    assert!(
        Loader::new(
            indexed(10, 2).with_item_shape(vec![4]).unwrap(),
            config(4, "flip")
        )
        .is_err()
    );
}

#[test]
fn loader_makes_views_of_the_configured_size() {
    // 3 items of shape [1, 6, 6]; views of 4×3.
    let data = (0..3 * 36).map(|i| i as f32).collect();
    let images = Dataset::new(data, vec![1, 6, 6], vec![0, 1, 0], 2).unwrap();
    let sized = LoaderConfig {
        view_size: Some((4, 3)),
        ..config(3, "crop:0.5,flip")
    };
    assert_eq!(sized.view_shape(&[1, 6, 6]).unwrap(), vec![1, 4, 3]);
    assert_eq!(sized.view_shape(&[6, 6]).unwrap(), vec![4, 3]);
    let loader = Loader::new(images.clone(), sized.clone()).unwrap();
    let batch = loader.epoch(0).next().unwrap().unwrap();
    assert_eq!(batch.views.dims(), &[9, 1, 4, 3]);
    let again = Loader::new(images.clone(), sized.clone()).unwrap();
    assert_eq!(
        again.epoch(0).next().unwrap().unwrap().views.data(),
        batch.views.data(),
        "seeded"
    );
    // Without augmentation the views are the resized images.
    let plain = Loader::new(
        images.clone(),
        LoaderConfig {
            sampler: Sampler::Sequential,
            ..LoaderConfig {
                view_size: Some((3, 3)),
                ..config(3, "none")
            }
        },
    )
    .unwrap();
    let first = plain.epoch(0).next().unwrap().unwrap();
    // Item 0 (pixel (y, x) = 6y + x) halved: source coordinates 2o + 0.5, so the first row
    // samples y = 0.5 at x = 0.5, 2.5, 4.5.
    assert_eq!(&first.views.data()[..3], &[3.5, 5.5, 7.5]);
    // Bad input: a view size for vector items, a zero side.
    let vectors = images.clone().with_item_shape(vec![36]).unwrap();
    let vector_views = LoaderConfig {
        view_size: Some((4, 3)),
        ..config(3, "noise")
    };
    let e = Loader::new(vectors, vector_views).unwrap_err().to_string();
    assert!(e.contains("[36]") && e.contains("(4, 3)"), "{e}");
    assert!(
        Loader::new(
            images,
            LoaderConfig {
                view_size: Some((0, 3)),
                ..sized
            }
        )
        .is_err()
    );
}

#[test]
fn loader_is_deterministic_resumable_and_prefetch_matches_sync() {
    let recipe = "shift:1,pixel_drop:0.1,noise:0.1";
    let all = digits::digits_embedded()
        .unwrap()
        .subset(&(0..300).collect::<Vec<_>>())
        .unwrap();
    let loader = Loader::new(all.clone(), config(64, recipe)).unwrap();
    let sync: Vec<_> = loader.epoch(3).map(Result::unwrap).collect();
    let again: Vec<_> = Loader::new(all.clone(), config(64, recipe))
        .unwrap()
        .epoch(3)
        .map(Result::unwrap)
        .collect();
    let bits = |b: &contrastive::data::Batch| {
        (
            b.indices.clone(),
            b.views
                .data()
                .iter()
                .map(|v| v.to_bits())
                .collect::<Vec<_>>(),
        )
    };
    assert!(
        sync.iter().zip(&again).all(|(a, b)| bits(a) == bits(b)),
        "same seed, same batches"
    );
    let prefetched: Vec<_> = loader.prefetch(3, 0).map(Result::unwrap).collect();
    assert_eq!(prefetched.len(), sync.len());
    assert!(
        sync.iter()
            .zip(&prefetched)
            .all(|(a, b)| bits(a) == bits(b)),
        "prefetch == sync"
    );
    let resumed: Vec<_> = loader.prefetch(3, 2).map(Result::unwrap).collect();
    assert!(
        resumed
            .iter()
            .zip(&sync[2..])
            .all(|(a, b)| bits(a) == bits(b) && a.step == b.step)
    );
    assert_eq!(resumed.len(), sync.len() - 2);
    // Different epochs and seeds give different orders; views of one item differ.
    assert_ne!(loader.epoch_indices(3), loader.epoch_indices(4));
    let other = Loader::new(
        all,
        LoaderConfig {
            seed: 12,
            ..config(64, recipe)
        },
    )
    .unwrap();
    assert_ne!(loader.epoch_indices(3), other.epoch_indices(3));
    assert_ne!(
        sync[0].view(0).unwrap().data(),
        sync[0].view(1).unwrap().data()
    );
    // Dropping a prefetcher part-way stops its thread (this would hang otherwise).
    let mut early = loader.prefetch(0, 0);
    assert!(early.next().unwrap().is_ok());
    drop(early);
}

#[test]
fn class_balanced_batches_have_equal_class_counts() {
    // 60 / 12 / 6 items of three classes: batches of 30 still hold 10 of each.
    let labels: Vec<usize> = (0..78)
        .map(|i| {
            if i < 60 {
                0
            } else if i < 72 {
                1
            } else {
                2
            }
        })
        .collect();
    let ds = Dataset::new((0..78).map(|i| i as f32).collect(), vec![1], labels, 3).unwrap();
    let cfg = LoaderConfig {
        sampler: Sampler::ClassBalanced,
        drop_last: true,
        ..config(30, "none")
    };
    let loader = Loader::new(ds, cfg).unwrap();
    for epoch in 0..3 {
        let plan = loader.epoch_indices(epoch);
        assert_eq!(plan.len(), 2);
        for batch in &plan {
            let mut counts = [0; 3];
            batch
                .iter()
                .for_each(|&i| counts[loader.dataset().labels()[i]] += 1);
            assert_eq!(counts, [10, 10, 10], "epoch {epoch}");
        }
    }
    // A batch of 31 gives one class an extra item.
    let cfg = LoaderConfig {
        sampler: Sampler::ClassBalanced,
        ..config(31, "none")
    };
    let plan = Loader::new(indexed(78, 3), cfg).unwrap().epoch_indices(0);
    let mut counts = [0; 3];
    plan[0].iter().for_each(|&i| counts[i % 3] += 1);
    counts.sort();
    assert_eq!(counts, [10, 10, 11]);
}
