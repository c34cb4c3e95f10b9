//! The deployment guide's building blocks, each a library function its Verify steps
//! can be checked against: artifact transfer with S3, the image in ECR, secrets.

pub mod ecr;
pub mod s3;
pub mod secrets;
