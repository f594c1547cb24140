//! Persistence, part of the `nn` test binary: safetensors round trips, the exact byte layout,
//! corrupt files (each error naming the file and the byte offset), headers written by other
//! tools, atomic writes, and `Module::load_state`.

use super::{rng, scratch};
use contrastive::nn::{
    Activation, EncoderHead, Mlp, Mode, Module, ProjectionHead, load_safetensors, save_safetensors,
    write_atomic,
};
use contrastive::{Error, Result, Tensor};
use std::collections::BTreeMap;
use std::path::PathBuf;

// ---------------------------------------------------------------------------------------------
// safetensors
// ---------------------------------------------------------------------------------------------

#[test]
fn safetensors_round_trip_f32_f64_and_metadata() -> Result<()> {
    let path = scratch("roundtrip.safetensors");
    let mut r = rng(14);
    let tensors: Vec<(String, Tensor<f64>)> = vec![
        ("z.last".into(), Tensor::randn([2, 3, 4], &mut r)),
        (
            "a.first".into(),
            Tensor::from_f64s(&[1.0 / 3.0, -2.5e-300, 7.0], [3])?,
        ),
        ("scalar".into(), Tensor::scalar(42.0)),
        ("empty".into(), Tensor::zeros([0, 5])),
    ];
    let meta = BTreeMap::from([
        ("format".to_string(), "pt".to_string()),
        ("note \"quoted\"\n".to_string(), "é ✓ \\ tab\t".to_string()),
    ]);
    save_safetensors(&path, &tensors, &meta)?;
    let (back, meta_back) = load_safetensors::<f64>(&path)?;
    assert_eq!(meta_back, meta);
    let names: Vec<&str> = back.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names, ["a.first", "empty", "scalar", "z.last"]);
    for (name, t) in &tensors {
        let (_, b) = back
            .iter()
            .find(|(n, _)| n == name)
            .expect("every tensor comes back");
        assert_eq!((b.dims(), b.to_vec()), (t.dims(), t.to_vec()), "{name}");
    }
    // An f64 file loads as f32 (rounded) and an f32 file as f64 (exactly).
    let (as_f32, _) = load_safetensors::<f32>(&path)?;
    assert_eq!(as_f32[0].1.to_vec(), [1.0f32 / 3.0, -0.0, 7.0]);
    let f32s = vec![(
        "w".to_string(),
        Tensor::<f32>::from_f64s(&[0.1, -3.5], [1, 2])?,
    )];
    save_safetensors(&path, &f32s, &BTreeMap::new())?;
    let (as_f64, meta) = load_safetensors::<f64>(&path)?;
    assert_eq!(as_f64[0].1.to_vec(), [0.1f32 as f64, -3.5]);
    assert!(meta.is_empty());
    std::fs::remove_file(&path).ok();
    Ok(())
}

#[test]
fn safetensors_byte_layout_follows_the_spec() -> Result<()> {
    let path = scratch("layout.safetensors");
    let t = vec![
        ("b".to_string(), Tensor::<f32>::from_f64s(&[1.0, 2.0], [2])?),
        ("a".to_string(), Tensor::scalar(-1.0f32)),
    ];
    save_safetensors(
        &path,
        &t,
        &BTreeMap::from([("k".to_string(), "v".to_string())]),
    )?;
    let bytes = std::fs::read(&path).expect("the file was just written");
    let json = r#"{"__metadata__":{"k":"v"},"a":{"dtype":"F32","shape":[],"data_offsets":[0,4]},"b":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}}"#;
    let n = u64::from_le_bytes(bytes[..8].try_into().expect("8 bytes")) as usize;
    // The header is the JSON padded with spaces so that the data starts 8-byte aligned.
    assert_eq!((8 + n) % 8, 0);
    assert_eq!(
        std::str::from_utf8(&bytes[8..8 + n])
            .expect("utf-8")
            .trim_end(),
        json
    );
    let mut data = Vec::new();
    for v in [-1.0f32, 1.0, 2.0] {
        data.extend_from_slice(&v.to_le_bytes());
    }
    assert_eq!(&bytes[8 + n..], &data[..]);
    std::fs::remove_file(&path).ok();
    Ok(())
}

/// A file made by hand: the length, `header`, then `data`.
fn raw_file(name: &str, header: &str, data: &[u8]) -> PathBuf {
    let path = scratch(name);
    let mut bytes = (header.len() as u64).to_le_bytes().to_vec();
    bytes.extend_from_slice(header.as_bytes());
    bytes.extend_from_slice(data);
    std::fs::write(&path, bytes).expect("scratch file");
    path
}

/// Loads `path`, expecting `Error::Data` at byte `at` naming the file; removes the file.
fn expect_corrupt(path: PathBuf, at: u64) {
    let err = load_safetensors::<f32>(&path).expect_err("a corrupt file must not load");
    std::fs::remove_file(&path).ok();
    match &err {
        Error::Data { file, at: got, .. } => {
            assert!(file.contains(&*path.to_string_lossy()), "{err}");
            assert_eq!(*got, at, "{err}");
            assert!(err.to_string().contains(&format!("at byte {at}")), "{err}");
        }
        other => panic!("expected a data error, got {other:?}"),
    }
}

#[test]
fn corrupt_safetensors_files_name_the_file_and_offset() {
    let at = |h: &str, needle: &str| 8 + h.find(needle).expect("needle in header") as u64;
    let ok = r#"{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}"#;
    // Shorter than the 8-byte length: reported at the end of the file.
    let path = scratch("short.safetensors");
    std::fs::write(&path, [1u8, 2, 3, 4, 5]).expect("scratch file");
    expect_corrupt(path, 5);
    // A header length beyond the end of the file.
    let path = scratch("long.safetensors");
    let mut bytes = 1000u64.to_le_bytes().to_vec();
    bytes.extend_from_slice(ok.as_bytes());
    std::fs::write(&path, bytes).expect("scratch file");
    expect_corrupt(path, 8);
    let colon = r#"{"a" {"dtype":"F32","shape":[2],"data_offsets":[0,8]}}"#;
    let cut = &ok[..ok.len() - 1];
    let outside = r#"{"a":{"dtype":"F32","shape":[4],"data_offsets":[0,16]}}"#;
    let size = r#"{"a":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}}"#;
    let gap = r#"{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"b":{"dtype":"F32","shape":[1],"data_offsets":[8,12]}}"#;
    let dtype = r#"{"a":{"dtype":"I64","shape":[1],"data_offsets":[0,8]}}"#;
    let mixed = r#"{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,"4",8]}}"#;
    let cases: [(&str, &str, usize, u64); 8] = [
        // Bad JSON: a missing `:` after the key; a header cut short.
        ("colon", colon, 8, 8 + 5),
        ("cut", cut, 8, 8 + cut.len() as u64),
        // Offsets outside the data section, and a data section cut short.
        ("outside", outside, 8, at(outside, "[0,16]")),
        ("truncated", ok, 4, at(ok, "[0,8]")),
        // A byte count that does not match dtype × shape.
        ("size", size, 8, at(size, "[0,8]")),
        // A gap between tensors, reported where the second one starts.
        ("gap", gap, 12, (8 + gap.len() + 8) as u64),
        ("dtype", dtype, 8, at(dtype, "\"I64\"")),
        // Offsets that are not two integers.
        ("mixed", mixed, 8, at(mixed, "[0,")),
    ];
    for (name, header, data_len, offset) in cases {
        expect_corrupt(raw_file(name, header, &vec![0u8; data_len]), offset);
    }
    // A missing file is an I/O error with the path.
    let missing = scratch("missing.safetensors");
    assert!(matches!(
        load_safetensors::<f32>(&missing),
        Err(Error::Io { .. })
    ));
}

#[test]
fn headers_from_other_writers_are_read() -> Result<()> {
    // Whitespace, escapes (a surrogate pair among them), unknown fields and tensors stored out
    // of name order, all of which the format allows.
    let header = "{ \"b\" : {\"dtype\":\"F64\", \"shape\":[1], \"data_offsets\":[0, 8], \"x\":null},\n\
                  \"a\":{\"dtype\":\"F32\",\"shape\":[1,1],\"data_offsets\":[8,12]},\n\
                  \"__metadata__\":{\"k\\u00e9\":\"\\ud83d\\ude00\\n\\/\"} }   ";
    let mut data = 2.5f64.to_le_bytes().to_vec();
    data.extend_from_slice(&(-1.0f32).to_le_bytes());
    let path = raw_file("other.safetensors", header, &data);
    let loaded = load_safetensors::<f64>(&path);
    std::fs::remove_file(&path).ok();
    let (tensors, meta) = loaded?;
    assert_eq!(meta["ké"], "😀\n/");
    assert_eq!(tensors[0].0, "a");
    assert_eq!(
        (tensors[0].1.dims(), tensors[0].1.to_vec()),
        (&[1, 1][..], vec![-1.0])
    );
    assert_eq!(
        (tensors[1].0.as_str(), tensors[1].1.to_vec()),
        ("b", vec![2.5])
    );
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// load_state
// ---------------------------------------------------------------------------------------------

/// `write_atomic`, behind every checkpoint and run file: the new bytes replace the old whole,
/// no temporary file is left beside them, and a failed write leaves nothing and names the path.
#[test]
fn write_atomic_replaces_whole_files_and_leaves_no_temporary() {
    let dir = scratch("atomic");
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("file.bin");
    write_atomic(&path, b"first version, longer than the second").unwrap();
    write_atomic(&path, b"second").unwrap();
    assert_eq!(std::fs::read(&path).unwrap(), b"second");
    let names: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names, vec!["file.bin".to_string()]);

    let missing = dir.join("no-such-folder").join("file.bin");
    let e = write_atomic(&missing, b"x").unwrap_err();
    assert!(
        matches!(&e, Error::Io { path, .. } if path == &missing.display().to_string()),
        "{e}"
    );
    // A folder where the file should be: the rename fails and the temporary is removed.
    std::fs::create_dir_all(dir.join("taken")).unwrap();
    assert!(write_atomic(dir.join("taken"), b"x").is_err());
    let left: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .filter(|n| n.to_string_lossy().contains(".tmp-"))
        .collect();
    assert!(left.is_empty(), "{left:?}");
    std::fs::remove_dir_all(&dir).ok();
}

fn small_model(seed: u64) -> Result<EncoderHead<f64>> {
    let mut r = rng(seed);
    Ok(EncoderHead::new(
        Mlp::new(&[3, 4, 4], Activation::Relu, true, &mut r)?,
        ProjectionHead::linear(4, 2, &mut r)?,
    ))
}

#[test]
fn saved_state_loads_into_a_fresh_model() -> Result<()> {
    let path = scratch("model.safetensors");
    let mut a = small_model(1)?;
    let x = Tensor::randn([6, 3], &mut rng(2));
    a.forward(&x, Mode::Train)?; // moves the running statistics away from their initial values
    save_safetensors(&path, &a.state_tensors(), &BTreeMap::new())?;
    let (loaded, _) = load_safetensors::<f64>(&path)?;
    std::fs::remove_file(&path).ok();
    let mut b = small_model(99)?;
    let ids: Vec<_> = b.named_parameters().iter().map(|(_, t)| t.id()).collect();
    assert_ne!(
        a.forward(&x, Mode::Eval)?.to_vec(),
        b.forward(&x, Mode::Eval)?.to_vec()
    );
    b.load_state(&loaded)?;
    assert_eq!(
        a.forward(&x, Mode::Eval)?.to_vec(),
        b.forward(&x, Mode::Eval)?.to_vec()
    );
    // Parameters keep their identity (optimiser state and gradients stay attached) and tracking.
    let after: Vec<_> = b.named_parameters().iter().map(|(_, t)| t.id()).collect();
    assert_eq!(ids, after);
    assert!(b.named_parameters().iter().all(|(_, t)| t.requires_grad()));
    Ok(())
}

#[test]
fn load_state_names_missing_extra_and_misshaped_tensors() -> Result<()> {
    let mut m = small_model(1)?;
    let good = m.state_tensors();
    let before = m.state_tensors();
    let message =
        |tensors: &[(String, Tensor<f64>)], m: &mut EncoderHead<f64>| match m.load_state(tensors) {
            Err(e @ Error::InvalidInput { .. }) => e.to_string(),
            other => panic!("expected an error, got {other:?}"),
        };
    let missing: Vec<_> = good
        .iter()
        .filter(|(n, _)| n != "head.layers.0.bias")
        .cloned()
        .collect();
    assert!(message(&missing, &mut m).contains("missing tensor `head.layers.0.bias`"));
    let mut extra = good.clone();
    extra.push(("head.layers.9.weight".into(), Tensor::zeros([1])));
    assert!(message(&extra, &mut m).contains("unexpected tensor `head.layers.9.weight`"));
    let mut wrong = good.clone();
    let i = wrong
        .iter()
        .position(|(n, _)| n == "encoder.layers.0.weight")
        .expect("present");
    wrong[i].1 = Tensor::zeros([3, 4]);
    let msg = message(&wrong, &mut m);
    assert!(
        msg.contains("`encoder.layers.0.weight` has shape [3, 4]") && msg.contains("[4, 3]"),
        "{msg}"
    );
    let mut twice = good.clone();
    twice.push(good[0].clone());
    assert!(message(&twice, &mut m).contains("given twice"));
    // A failed load changes nothing.
    for ((n1, t1), (n2, t2)) in before.iter().zip(m.state_tensors()) {
        assert_eq!((n1, t1.to_vec()), (&n2, t2.to_vec()));
    }
    Ok(())
}
