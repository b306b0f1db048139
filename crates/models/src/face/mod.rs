//! Faces with pretrained nets (face-api's, converted to safetensors in PyTorch layout): a
//! tiny YOLOv2-style face detector, a 68-point landmark net and dlib's 128-D descriptor
//! ResNet, and the pipeline that chains them into verification and one-shot recognition.
//!
//! Each net follows `assets/weights/faces/README.md` layer by layer: TensorFlow's SAME
//! padding (the odd cell at the bottom/right), its legacy bilinear resize (no half-pixel
//! centres), zero padding to a square before resizing, and the preprocessing means. The
//! tensors load by their TF.js names (`conv1.depthwise_filter`, `conv32_1.conv1.scale.weights`).

mod detector;
mod landmarks;
mod layers;
mod pipeline;
mod pixels;
mod recognition;

pub use detector::{
    decode_faces, DetectOptions, FaceBox, TinyFaceDetector, DETECTOR_MEAN, FACE_ANCHORS,
};
pub use landmarks::{DenseBlock, FaceLandmark68Net, FACE_MEAN, LANDMARK_SIZE};
pub use layers::{ConvScale, Dense, SeparableConv, TfConv};
pub use pipeline::{
    dlib_crop, face_distance, verify, Face, FaceDatabase, FaceNets, Match, FACE_WEIGHT_FILES,
    SAME_PERSON_THRESHOLD,
};
pub use pixels::{clip_box, PixelRect, Pixels};
pub use recognition::{DlibResidual, FaceRecognitionNet, RECOGNITION_SIZE};
