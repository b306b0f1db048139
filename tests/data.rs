//! Data: augmentation and image files to and from tensors.

use fovea::data::{load_image, resize_exact, save_image, DataLoader, InMemoryDataset, Resize};
use fovea::{Device, Error, Tensor};

fn tmp(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("fovea-data-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir.join(name)
}

/// Items whose pixels are all distinct, so a flip can be told from any other change.
fn ramp_dataset(n: usize) -> InMemoryDataset {
    let (h, w) = (3, 5);
    InMemoryDataset {
        shape: vec![2, h, w],
        values: (0..n * 2 * h * w).map(|v| v as f32).collect(),
        labels: (0..n).map(|i| i % 3).collect(),
        classes: 3,
        background: 0.0,
    }
}

#[test]
fn random_flip_mirrors_about_half_the_items_and_nothing_else() {
    let data = ramp_dataset(200);
    let dev = Device::cpu();
    let size = 2 * 3 * 5;
    let mut flipped = 0;
    for batch in DataLoader::new(&data, 64, None, &dev)
        .unwrap()
        .random_flip(3)
    {
        let batch = batch.unwrap();
        let first = batch.images.to_vec().unwrap()[0] as usize / size;
        for (k, item) in batch.images.to_vec().unwrap().chunks(size).enumerate() {
            let orig = &data.values[(first + k) * size..(first + k + 1) * size];
            let mirror: Vec<f32> = orig
                .chunks(5)
                .flat_map(|row| row.iter().rev().copied())
                .collect();
            if item == orig {
                continue;
            }
            assert_eq!(
                item,
                mirror.as_slice(),
                "item {} is neither itself nor its mirror",
                first + k
            );
            flipped += 1;
        }
    }
    assert!(
        (70..130).contains(&flipped),
        "{flipped} of 200 items flipped"
    );
    let all = |seed| -> Vec<f32> {
        DataLoader::new(&data, 64, None, &dev)
            .unwrap()
            .random_flip(seed)
            .flat_map(|b| b.unwrap().images.to_vec().unwrap())
            .collect()
    };
    let (first, again, other) = (all(3), all(3), all(4));
    assert_eq!(again, first, "the same seed flips the same items");
    assert_ne!(other, first, "another seed flips others");
}

#[test]
fn images_round_trip_through_files_as_nchw() {
    let dev = Device::cpu();
    let (h, w) = (7, 11);
    let values: Vec<f32> = (0..3 * h * w).map(|i| (i % 256) as f32 / 255.0).collect();
    let t = Tensor::from_vec(values.clone(), &[1, 3, h, w], &dev).unwrap();
    let path = tmp("rgb.png");
    save_image(&t, &path).unwrap();
    let back = load_image(&path, 3, Resize::Keep, &dev).unwrap();
    assert_eq!(back.shape(), &[1, 3, h, w]);
    let err = back
        .to_vec()
        .unwrap()
        .iter()
        .zip(&values)
        .map(|(a, b)| (a - b).abs())
        .fold(0.0, f32::max);
    assert!(err < 1e-6, "round trip error {err}");

    let gray = load_image(
        &path,
        1,
        Resize::Exact {
            width: 4,
            height: 9,
        },
        &dev,
    )
    .unwrap();
    assert_eq!(gray.shape(), &[1, 1, 9, 4]);
    let longer = load_image(&path, 3, Resize::LongerSide(22), &dev).unwrap();
    assert_eq!(longer.shape(), &[1, 3, 14, 22]);
}

#[test]
fn bad_image_files_and_shapes_are_clear_errors() {
    let dev = Device::cpu();
    let missing = tmp("missing.png");
    let err = load_image(&missing, 3, Resize::Keep, &dev).unwrap_err();
    assert!(err.to_string().contains("missing.png"), "{err}");

    let junk = tmp("junk.png");
    std::fs::write(&junk, b"not a png at all").unwrap();
    let err = load_image(&junk, 3, Resize::Keep, &dev).unwrap_err();
    assert!(
        matches!(err, Error::Format { .. }) && err.to_string().contains("junk.png"),
        "{err}"
    );

    let ok = tmp("ok.png");
    save_image(&Tensor::zeros(&[1, 1, 2, 2], &dev), &ok).unwrap();
    let err = load_image(&ok, 2, Resize::Keep, &dev).unwrap_err();
    assert!(err.to_string().contains("load_image"), "{err}");

    // A wrong shape or extension is refused and leaves an existing file as it was.
    let before = std::fs::read(&ok).unwrap();
    let err = save_image(&Tensor::zeros(&[2, 3, 4, 4], &dev), &ok).unwrap_err();
    assert!(err.to_string().contains("[2, 3, 4, 4]"), "{err}");
    let err = save_image(&Tensor::zeros(&[1, 4, 4], &dev), &tmp("x.unknownext")).unwrap_err();
    assert!(err.to_string().contains("x.unknownext"), "{err}");
    assert_eq!(std::fs::read(&ok).unwrap(), before);
}

#[test]
fn an_image_folder_loads_as_a_labelled_dataset() {
    let dev = Device::cpu();
    let root = tmp("folder");
    // A process of the same id before may have left its folder (with its empty class).
    let _ = std::fs::remove_dir_all(&root);
    for (class, shade) in [("cats", 0.2f32), ("dogs", 0.8)] {
        std::fs::create_dir_all(root.join(class)).unwrap();
        for i in 0..3 {
            let img = Tensor::full(&[1, 3, 6, 4], shade + 0.01 * i as f32, &dev);
            save_image(&img, &root.join(class).join(format!("{i}.png"))).unwrap();
        }
    }
    std::fs::write(root.join("cats").join("notes.txt"), "not an image").unwrap();
    let (mut data, names) = InMemoryDataset::from_image_folder(&root, 2, 3, 3).unwrap();
    assert_eq!(names, ["cats", "dogs"]);
    assert_eq!(data.labels, [0, 0, 0, 1, 1, 1]);
    assert_eq!(data.shape, [3, 3, 2]);
    let first = data.values[0];
    assert!((first - 0.2).abs() < 0.01, "{first}");
    data.normalize(&[0.5, 0.5, 0.5], &[0.25, 0.25, 0.25])
        .unwrap();
    assert!((data.values[0] - (first - 0.5) / 0.25).abs() < 1e-6);
    assert!(
        data.normalize(&[0.5], &[1.0]).is_err(),
        "one mean for three channels"
    );

    // Six images that each fit what one tensor may hold but together do not: refused
    // before any is decoded (each would be a quarter of that most).
    let side = ((dev.max_len() / 12) as f64).sqrt() as u32;
    let err = InMemoryDataset::from_image_folder(&root, side, side, 3).unwrap_err();
    let msg = err.to_string();
    let item = format!("6 images of [3, {side}, {side}]");
    assert!(msg.contains(&item) && msg.contains("folder"), "{msg}");

    std::fs::write(root.join("dogs").join("broken.png"), b"\x89PNG garbage").unwrap();
    let err = InMemoryDataset::from_image_folder(&root, 2, 3, 3).unwrap_err();
    assert!(err.to_string().contains("broken.png"), "{err}");
    std::fs::create_dir_all(root.join("empty")).unwrap();
    std::fs::remove_file(root.join("dogs").join("broken.png")).unwrap();
    let err = InMemoryDataset::from_image_folder(&root, 2, 3, 3).unwrap_err();
    assert!(err.to_string().contains("empty"), "{err}");
    std::fs::remove_dir_all(&root).unwrap();
}

/// A PNG chunk: length, type, data and the CRC-32 of type and data.
fn png_chunk(kind: &[u8; 4], data: &[u8]) -> Vec<u8> {
    let mut crc = !0u32;
    for &byte in kind.iter().chain(data) {
        crc ^= byte as u32;
        for _ in 0..8 {
            crc = if crc & 1 == 1 {
                (crc >> 1) ^ 0xEDB8_8320
            } else {
                crc >> 1
            };
        }
    }
    let mut out = (data.len() as u32).to_be_bytes().to_vec();
    out.extend(kind);
    out.extend(data);
    out.extend((!crc).to_be_bytes());
    out
}

/// A PNG file that declares `w × h` 8-bit RGB pixels but holds none of them (its image
/// data is the start of an empty zlib stream): only a check of the header can tell
/// anything about it before decoding fails.
fn png_header_only(w: u32, h: u32) -> Vec<u8> {
    let mut ihdr = w.to_be_bytes().to_vec();
    ihdr.extend(h.to_be_bytes());
    ihdr.extend([8, 2, 0, 0, 0]);
    let mut png = b"\x89PNG\r\n\x1a\n".to_vec();
    png.extend(png_chunk(b"IHDR", &ihdr));
    png.extend(png_chunk(b"IDAT", &[0x78, 0x9c]));
    png.extend(png_chunk(b"IEND", &[]));
    png
}

/// The size an image would take is checked against the device before its pixels are
/// decoded: a 20000×20000 picture on a device admitting 1 GiB per tensor is refused from
/// its header (the file below has no pixels, so decoding would fail differently), and a
/// small real one is refused on a device too small for it.
#[test]
fn images_too_large_for_the_device_are_refused_before_decoding() {
    let small = Device::cpu_with_memory_limit(1 << 30);
    let big = tmp("huge-header.png");
    std::fs::write(&big, png_header_only(20_000, 20_000)).unwrap();
    for channels in [1, 3] {
        let err = load_image(&big, channels, Resize::Keep, &small)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("huge-header.png")
                && err.contains(&format!("[1, {channels}, 20000, 20000]"))
                && err.contains(&small.max_len().to_string()),
            "{err}"
        );
    }
    // Resized to something small, the same header passes the check, and decoding then
    // finds no pixels.
    let err = load_image(&big, 3, Resize::LongerSide(64), &small)
        .unwrap_err()
        .to_string();
    assert!(err.contains("cannot read the image"), "{err}");

    let path = tmp("small-real.png");
    let img = Tensor::rand(&[1, 3, 40, 30], 5, &Device::cpu());
    save_image(&img, &path).unwrap();
    let tiny = Device::cpu_with_memory_limit(4 * 3 * 40 * 30 - 4);
    let err = load_image(&path, 3, Resize::Keep, &tiny).unwrap_err();
    assert!(err.to_string().contains("[1, 3, 40, 30]"), "{err}");
    let fits = Device::cpu_with_memory_limit(4 * 3 * 40 * 30);
    let back = load_image(&path, 3, Resize::Keep, &fits).unwrap();
    assert_eq!(back.shape(), &[1, 3, 40, 30]);
}

/// Gray values stay within the documented [0, 1], white included (luma's weights summed
/// in f32 gave 1.0000001), and 16-bit pictures load at full precision.
/// A resize whose buffers no host holds is an error naming both sizes (the `image` crate
/// aborts on such an allocation); one that fits gives the asked size.
#[test]
fn resizes_past_the_hosts_memory_are_refused() {
    let img = image::DynamicImage::new_rgb8(40, 30);
    let err = resize_exact(&img, 1 << 20, 1 << 20)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("resize_exact") && err.contains("40×30") && err.contains("1048576×1048576"),
        "{err}"
    );
    assert!(resize_exact(&img, 0, 5).is_err());
    let small = resize_exact(&img, 8, 6).unwrap();
    assert_eq!((small.width(), small.height()), (8, 6));
}

#[test]
fn gray_images_stay_within_zero_and_one() {
    let dev = Device::cpu();
    let path = tmp("white-and-colours.png");
    let mut rgb: Vec<u8> = vec![255; 3 * 4];
    rgb.extend([255, 0, 0, 0, 255, 0, 0, 0, 255, 10, 20, 30]);
    image::save_buffer(&path, &rgb, 4, 2, image::ExtendedColorType::Rgb8).unwrap();
    let gray = load_image(&path, 1, Resize::Keep, &dev)
        .unwrap()
        .to_vec()
        .unwrap();
    assert_eq!(&gray[..4], &[1.0; 4], "white");
    assert!(gray.iter().all(|v| (0.0..=1.0).contains(v)), "{gray:?}");
    // Rec. 709 luma of pure red, green and blue.
    for (v, want) in gray[4..7].iter().zip([0.2126, 0.7152, 0.0722]) {
        assert!((v - want).abs() < 1e-6, "{v} vs {want}");
    }
    let rgb_back = load_image(&path, 3, Resize::Keep, &dev)
        .unwrap()
        .to_vec()
        .unwrap();
    // Planes of 8 pixels: the last pixel's red, then its blue.
    assert_eq!(rgb_back[7], 10.0 / 255.0);
    assert_eq!(rgb_back[23], 30.0 / 255.0);

    let deep = tmp("deep.png");
    let samples: Vec<u16> = vec![0, 1, 65534, 65535];
    let bytes: Vec<u8> = samples.iter().flat_map(|v| v.to_ne_bytes()).collect();
    image::save_buffer(&deep, &bytes, 2, 2, image::ExtendedColorType::L16).unwrap();
    let v = load_image(&deep, 3, Resize::Keep, &dev)
        .unwrap()
        .to_vec()
        .unwrap();
    let want: Vec<f32> = samples.iter().map(|&s| s as f32 / 65535.0).collect();
    assert_eq!(&v[..4], &want[..], "gray repeated on each plane");
    assert_eq!(&v[8..], &want[..]);
}

fn gz(bytes: &[u8]) -> Vec<u8> {
    use std::io::Write;
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    e.write_all(bytes).unwrap();
    e.finish().unwrap()
}

/// IDX headers are checked before the data is read: no zero dimensions (they loaded, then
/// the loader's next batch panicked) and no overflowing ones.
#[test]
fn idx_files_with_zero_or_overflowing_dimensions_are_refused() {
    let zero = tmp("zero-dim.idx");
    std::fs::write(&zero, [0, 0, 8, 3, 0, 0, 0, 5, 0, 0, 0, 0, 0, 0, 0, 28]).unwrap();
    let err = fovea::data::read_idx(&zero).unwrap_err().to_string();
    assert!(
        err.contains("zero-dim.idx") && err.contains("[5, 0, 28]"),
        "{err}"
    );
    let labels = tmp("zero-dim-labels.idx");
    std::fs::write(&labels, [0, 0, 8, 1, 0, 0, 0, 5, 0, 1, 2, 3, 4]).unwrap();
    assert!(InMemoryDataset::from_idx(&zero, &labels, 10, 0.0, 1.0).is_err());

    let overflow = tmp("overflow.idx");
    let mut bytes = vec![0, 0, 8, 3];
    bytes.extend([0xff; 12]);
    std::fs::write(&overflow, &bytes).unwrap();
    let err = fovea::data::read_idx(&overflow).unwrap_err().to_string();
    assert!(err.contains("overflow"), "{err}");
}

/// A gzipped IDX file is inflated only as far as its header says the data goes. This one
/// is cut short after more than that: reading it to the end would report a broken gzip
/// stream, reading what the header asks for finds the trailing bytes first. And a header
/// claiming 4 GiB in a 100-byte file is refused as truncated, without reserving 4 GiB.
#[test]
fn gzipped_idx_files_are_read_no_further_than_their_header() {
    let mut idx = vec![0, 0, 8, 1, 0, 0, 0, 16];
    idx.extend((0..100_000u32).map(|i| (i * 7) as u8));
    let whole = gz(&idx);
    let cut = tmp("cut.idx.gz");
    std::fs::write(&cut, &whole[..whole.len() / 2]).unwrap();
    let err = fovea::data::read_idx(&cut).unwrap_err().to_string();
    assert!(err.contains("trailing"), "{err}");

    let mut liar = vec![0, 0, 8, 2, 0, 1, 0, 0, 0, 1, 0, 0];
    liar.extend([0; 64]);
    let path = tmp("liar.idx.gz");
    std::fs::write(&path, gz(&liar)).unwrap();
    let err = fovea::data::read_idx(&path).unwrap_err().to_string();
    assert!(
        err.contains("truncated") && err.contains("[65536, 65536]"),
        "{err}"
    );

    // What the header describes still loads, compressed or not.
    let mut good = vec![0, 0, 8, 2, 0, 0, 0, 2, 0, 0, 0, 3];
    good.extend([1, 2, 3, 4, 5, 6]);
    let path = tmp("good.idx.gz");
    std::fs::write(&path, gz(&good)).unwrap();
    let idx = fovea::data::read_idx(&path).unwrap();
    assert_eq!((idx.dims, idx.data), (vec![2, 3], vec![1, 2, 3, 4, 5, 6]));
}

/// A dataset built by hand that does not add up (values short of or past one item per
/// label, a label not below its classes) is refused by the loader with what is wrong,
/// before any batch: a short one panicked on a slice out of range in the first batch.
#[test]
fn a_loader_over_a_dataset_that_does_not_add_up_is_an_error() {
    let dev = Device::cpu();
    let fine = ramp_dataset(5);
    let mut short = fine.clone();
    short.values.truncate(4 * 30 + 7);
    let mut long = fine.clone();
    long.values.push(1.0);
    let mut label = fine.clone();
    label.labels[3] = 3;
    for (data, want) in [
        (
            &short,
            "5 labels of items shaped [2, 3, 5] need 5 × 30 values, got 127",
        ),
        (&long, "got 151"),
        (&label, "label 3 of item 3 is not below its 3 classes"),
    ] {
        let err = DataLoader::new(data, 2, Some(1), &dev).err().expect(want);
        assert!(err.to_string().contains(want), "{err}");
    }
    // What is cut from one keeps what it has, and the loader still says what is wrong.
    assert_eq!(short.take(9).values.len(), 127);
    assert!(DataLoader::new(&short.take(9), 2, None, &dev).is_err());
    assert_eq!(DataLoader::new(&fine, 2, None, &dev).unwrap().count(), 3);
}

/// A dataset whose items hold no values is refused by the loader up front (its batches
/// were cut into chunks of size zero, a panic).
#[test]
fn a_loader_over_empty_items_is_an_error() {
    let data = InMemoryDataset {
        shape: vec![1, 0, 28],
        values: Vec::new(),
        labels: vec![0; 5],
        classes: 1,
        background: 0.0,
    };
    let err = DataLoader::new(&data, 2, None, &Device::cpu())
        .err()
        .unwrap();
    assert!(err.to_string().contains("[1, 0, 28]"), "{err}");
    let fine = ramp_dataset(4);
    let tiny = Device::cpu_with_memory_limit(4 * 30);
    assert!(
        DataLoader::new(&fine, 2, None, &tiny).is_err(),
        "a batch of 60 values"
    );
    let batches: Vec<_> = DataLoader::new(&fine, 1, None, &tiny).unwrap().collect();
    assert_eq!(batches.len(), 4);
    assert!(batches
        .iter()
        .all(|b| b.as_ref().is_ok_and(|b| b.images.device() == &tiny)));
}
