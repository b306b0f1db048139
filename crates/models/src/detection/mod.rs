//! Detection and localisation: boxes, IoU and non-max suppression (torchvision's
//! semantics), anchors and their k-means selection, the YOLO head, target encoding, loss
//! and decoding, classification with localisation and landmarks, VOC mAP, and sliding
//! windows the naive and the convolutional way.
//!
//! Box utilities work on host `[f32; 4]` boxes in `xyxy` pixels (sequential, small
//! algorithms); losses are built from tensor ops, so autodiff differentiates them on any
//! device.

pub mod anchors;
pub mod boxes;
pub mod localize;
pub mod map;
pub mod sliding;
pub mod yolo;

pub use anchors::{best_anchor, box_shapes, grid_anchors, kmeans_anchors, shape_iou, AnchorFit};
pub use boxes::{
    batched_nms, box_area, box_convert, box_iou, check_boxes, convert_box, iou, nms, BoxFormat,
};
pub use localize::{
    decode_landmarks, decode_localization, ink_landmarks, landmark_loss, localization_loss,
    LandmarkHead, LocalizationHead, LocalizationLoss, LocalizationTarget, Localized,
};
pub use map::{average_precision, mean_average_precision, GroundTruth, MeanAp};
pub use sliding::{ConvWindowClassifier, WindowClassifier, CROP_VALUES, WINDOW, WINDOW_STRIDE};
pub use yolo::{
    DecodeOptions, Detection, YoloHead, YoloLoss, YoloLossOptions, YoloSpec, YoloTargets,
};
