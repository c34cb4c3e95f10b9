//! The cloud building blocks, each a library function a setup check can be run
//! against: artifact transfer with S3, the image in ECR, secrets.

pub mod ecr;
pub mod records;
pub mod s3;
pub mod secrets;
