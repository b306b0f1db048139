//! Receptive-field arithmetic against hand-worked values.
//!
//! VGG16's trunk is 3×3 convolutions (stride 1, padding 1) and 2×2 max pools (stride 2).
//! Worked by hand with r_out = r_in + (k − 1)·j_in, j_out = j_in·s and the centre of unit
//! 0's field c_out = c_in + ((k − 1)/2 − p)·j_in, from the input (r 1, j 1, c 0):
//!
//! | layer   | window      | size r | jump j | centre c |
//! | ---     | ---         | ---:   | ---:   | ---:     |
//! | conv1_1 | 3×3 s1 p1   |   3    |  1     |  0       |  1 + 2·1
//! | conv1_2 | 3×3 s1 p1   |   5    |  1     |  0       |  3 + 2·1
//! | pool1   | 2×2 s2      |   6    |  2     |  0.5     |  5 + 1·1; c + ½·1
//! | conv2_1 |             |  10    |  2     |  0.5     |  6 + 2·2
//! | conv2_2 |             |  14    |  2     |  0.5     | 10 + 2·2
//! | pool2   |             |  16    |  4     |  1.5     | 14 + 1·2; c + ½·2
//! | conv3_1 |             |  24    |  4     |  1.5     | 16 + 2·4
//! | conv3_2 |             |  32    |  4     |          |
//! | conv3_3 |             |  40    |  4     |          |
//! | pool3   |             |  44    |  8     |  3.5     | 40 + 1·4
//! | conv4_1 |             |  60    |  8     |          | 44 + 2·8
//! | conv4_2 |             |  76    |  8     |          |
//! | conv4_3 |             |  92    |  8     |          |
//! | pool4   |             | 100    | 16     |  7.5     | 92 + 1·8
//! | conv5_1 |             | 132    | 16     |          | 100 + 2·16
//! | conv5_2 |             | 164    | 16     |          |
//! | conv5_3 |             | 196    | 16     |          |
//! | pool5   |             | 212    | 32     | 15.5     | 196 + 1·16
//!
//! (The "16 after a pool" of the course is pool2's field; conv2_2 before it sees 14.)
//! These are the published values (e.g. Araujo et al., "Computing receptive fields of
//! convolutional neural networks", Distill 2019: VGG16 pool5 212). The course's other
//! classic cases: two stacked 3×3 convolutions see 5×5 and three see 7×7, as one 7×7
//! does; AlexNet's conv1 (11×11, stride 4) then 3×3/2 max pool sees 19 with jump 8.

use fovea::models::{Vgg, VggConfig};
use fovea::nn::receptive_field::{receptive_field, receptive_fields, windows, Window};
use fovea::Device;

#[test]
fn vgg16_fields_match_the_hand_worked_table() {
    let dev = Device::cpu();
    let vgg = Vgg::features_only(VggConfig::Vgg16, false, 0, &dev).unwrap();
    let w = windows(&vgg.features);
    assert_eq!(w.len(), 13 + 5, "13 convolutions and 5 pools");
    let rf = receptive_fields(&w).unwrap();
    let sizes: Vec<usize> = rf.iter().map(|r| r.size).collect();
    assert_eq!(
        sizes,
        [3, 5, 6, 10, 14, 16, 24, 32, 40, 44, 60, 76, 92, 100, 132, 164, 196, 212]
    );
    let jumps: Vec<usize> = rf.iter().map(|r| r.jump).collect();
    assert_eq!(
        jumps,
        [1, 1, 2, 2, 2, 4, 4, 4, 4, 8, 8, 8, 8, 16, 16, 16, 16, 32]
    );
    let starts: Vec<f64> = [1, 2, 5, 9, 13, 17].iter().map(|&i| rf[i].start).collect();
    assert_eq!(starts, [0.0, 0.5, 1.5, 3.5, 7.5, 15.5]);
    // conv3_3 unit (2, 2): centre 1.5 + 2·4 = 9.5, 40 wide: pixels −10 … 29, clipped.
    assert_eq!(rf[8].span(2, 224), (0, 30));
    // conv5_3 unit 7: centre 7.5 + 7·16 = 119.5, 196 wide: 21.5 … 217.5 -> 22..218.
    assert_eq!(rf[16].span(7, 224), (22, 218));
}

#[test]
fn the_course_cases() {
    let c3 = Window::new(3, 1, 0);
    assert_eq!(receptive_field(&[c3, c3]).unwrap().size, 5);
    assert_eq!(receptive_field(&[c3, c3, c3]).unwrap().size, 7);
    assert_eq!(receptive_field(&[Window::new(7, 1, 0)]).unwrap().size, 7);
    let alex = receptive_field(&[Window::new(11, 4, 2), Window::new(3, 2, 0)]).unwrap();
    assert_eq!((alex.size, alex.jump), (19, 8));
    // Dilation 2 spreads a 3×3 over 5 pixels.
    let dil = Window {
        dilation: 2,
        ..Window::new(3, 1, 2)
    };
    let r = receptive_field(&[dil, dil]).unwrap();
    assert_eq!((r.size, r.start), (9, 0.0));
    let e = receptive_fields(&[c3, Window::new(3, 0, 0)])
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("receptive_field") && e.contains("window 1"),
        "{e}"
    );
}
