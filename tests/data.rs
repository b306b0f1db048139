//! Data: augmentation and image files to and from tensors.

use fovea::data::{load_image, save_image, DataLoader, InMemoryDataset, Resize};
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

    std::fs::write(root.join("dogs").join("broken.png"), b"\x89PNG garbage").unwrap();
    let err = InMemoryDataset::from_image_folder(&root, 2, 3, 3).unwrap_err();
    assert!(err.to_string().contains("broken.png"), "{err}");
    std::fs::create_dir_all(root.join("empty")).unwrap();
    std::fs::remove_file(root.join("dogs").join("broken.png")).unwrap();
    let err = InMemoryDataset::from_image_folder(&root, 2, 3, 3).unwrap_err();
    assert!(err.to_string().contains("empty"), "{err}");
}
