//! The one place where errors become Docker API responses: a status code and
//! `{"message": "..."}` with Docker's wording where clients depend on it.

use std::fmt::Write as _;

use hyper::StatusCode;

use crate::volumes::VolumeError;

/// An error as the API reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    /// The HTTP status.
    pub status: StatusCode,
    /// The `message` of the body.
    pub message: String,
}

impl ApiError {
    /// An error with a status and message.
    pub fn new(status: StatusCode, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            message: message.into(),
        }
    }

    /// 400 Bad Request.
    pub fn bad_request(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, message)
    }

    /// 404 Not Found.
    pub fn not_found(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::NOT_FOUND, message)
    }

    /// 500 Internal Server Error.
    pub fn internal(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, message)
    }

    /// The JSON body.
    pub fn body(&self) -> String {
        serde_json::json!({ "message": self.message }).to_string()
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}", self.status.as_u16(), self.message)
    }
}

/// An error and its causes on one line, `a: b: c`, as Docker prints wrapped errors.
pub fn chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        let m = c.to_string();
        if !s.contains(&m) {
            let _ = write!(s, ": {m}");
        }
        cur = c.source();
    }
    s
}

impl From<skiff_store::Error> for ApiError {
    fn from(e: skiff_store::Error) -> ApiError {
        use skiff_store::{Error, ErrorKind};
        match &e {
            // Docker's exact wording: clients (the CLI's pull-on-create) match on it.
            Error::ImageNotFound(name) => ApiError::not_found(format!("No such image: {name}")),
            Error::ImageInUse { image, why } => ApiError::new(
                StatusCode::CONFLICT,
                format!(
                    "conflict: unable to delete {} (must be forced) - {why}",
                    image
                        .strip_prefix("sha256:")
                        .unwrap_or(image)
                        .get(..12)
                        .unwrap_or(image)
                ),
            ),
            _ => {
                let status = match e.kind() {
                    ErrorKind::NotFound => StatusCode::NOT_FOUND,
                    ErrorKind::Conflict => StatusCode::CONFLICT,
                    ErrorKind::InvalidInput => StatusCode::BAD_REQUEST,
                    ErrorKind::Internal => StatusCode::INTERNAL_SERVER_ERROR,
                };
                ApiError::new(status, chain(&e))
            }
        }
    }
}

impl From<skiff_registry::Error> for ApiError {
    fn from(e: skiff_registry::Error) -> ApiError {
        let status = if e.is_not_found() {
            StatusCode::NOT_FOUND
        } else if e.is_unauthorized() {
            StatusCode::UNAUTHORIZED
        } else {
            match e {
                skiff_registry::Error::InvalidConfig(_) => StatusCode::BAD_REQUEST,
                _ => StatusCode::INTERNAL_SERVER_ERROR,
            }
        };
        ApiError::new(status, chain(&e))
    }
}

impl From<skiff_image::Error> for ApiError {
    fn from(e: skiff_image::Error) -> ApiError {
        match e {
            skiff_image::Error::Registry(r) => r.into(),
            skiff_image::Error::Store(s) => s.into(),
            skiff_image::Error::Invalid(m) => ApiError::bad_request(m),
            other => {
                let status = match other.registry_error() {
                    Some(r) if r.is_not_found() => StatusCode::NOT_FOUND,
                    Some(r) if r.is_unauthorized() => StatusCode::UNAUTHORIZED,
                    _ => StatusCode::INTERNAL_SERVER_ERROR,
                };
                ApiError::new(status, chain(&other))
            }
        }
    }
}

impl From<skiff_reference::Error> for ApiError {
    fn from(e: skiff_reference::Error) -> ApiError {
        ApiError::bad_request(chain(&e))
    }
}

impl From<VolumeError> for ApiError {
    fn from(e: VolumeError) -> ApiError {
        let status = match &e {
            VolumeError::NotFound(_) => StatusCode::NOT_FOUND,
            VolumeError::InUse { .. } => StatusCode::CONFLICT,
            VolumeError::InvalidName(_) | VolumeError::Driver(_) => StatusCode::BAD_REQUEST,
            VolumeError::Io { .. } | VolumeError::Json { .. } => StatusCode::INTERNAL_SERVER_ERROR,
        };
        ApiError::new(status, chain(&e))
    }
}

impl From<skiff_engine::Error> for ApiError {
    fn from(e: skiff_engine::Error) -> ApiError {
        use skiff_engine::{Error, ErrorKind};
        let status = match e.kind() {
            ErrorKind::NotFound => StatusCode::NOT_FOUND,
            ErrorKind::Conflict => StatusCode::CONFLICT,
            ErrorKind::InvalidInput => StatusCode::BAD_REQUEST,
            ErrorKind::Internal => StatusCode::INTERNAL_SERVER_ERROR,
            ErrorKind::NotImplemented => StatusCode::NOT_IMPLEMENTED,
        };
        match e {
            // Docker's wording ("No such container: x", "No such image: x"): the CLI's
            // pull-on-create and `inspect`'s fall-through match on the 404.
            Error::NoSuchContainer(_) | Error::NoSuchImage(_) => {
                ApiError::new(status, e.to_string())
            }
            // The CLI maps a start failure's text to 127/126: Docker reports it as 400.
            Error::Start { .. } => ApiError::bad_request(chain(&e)),
            _ => ApiError::new(status, chain(&e)),
        }
    }
}

impl From<skiff_network::NetworkError> for ApiError {
    fn from(e: skiff_network::NetworkError) -> ApiError {
        use skiff_network::NetworkError;
        let status = match &e {
            NetworkError::NotFound(_) => StatusCode::NOT_FOUND,
            NetworkError::Conflict(_) => StatusCode::CONFLICT,
            NetworkError::Forbidden(_) => StatusCode::FORBIDDEN,
            NetworkError::InvalidInput(_) => StatusCode::BAD_REQUEST,
            _ => StatusCode::INTERNAL_SERVER_ERROR,
        };
        ApiError::new(status, chain(&e))
    }
}

impl From<tokio::task::JoinError> for ApiError {
    fn from(e: tokio::task::JoinError) -> ApiError {
        ApiError::internal(format!("a worker task failed: {e}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn store_not_found_uses_docker_wording() {
        let e: ApiError = skiff_store::Error::ImageNotFound("busybox".into()).into();
        assert_eq!(e.status, StatusCode::NOT_FOUND);
        assert_eq!(e.body(), r#"{"message":"No such image: busybox"}"#);
    }

    #[test]
    fn engine_errors_map_to_docker_statuses() {
        let e: ApiError = skiff_engine::Error::NoSuchContainer("c1".into()).into();
        assert_eq!(e.status, StatusCode::NOT_FOUND);
        assert_eq!(e.message, "No such container: c1");
        let e: ApiError = skiff_engine::Error::NoSuchImage("bb".into()).into();
        assert_eq!(e.body(), r#"{"message":"No such image: bb"}"#);
        let e: ApiError = skiff_engine::Error::Conflict("name in use".into()).into();
        assert_eq!(e.status, StatusCode::CONFLICT);
        let e: ApiError = skiff_engine::Error::InvalidInput("bad".into()).into();
        assert_eq!(e.status, StatusCode::BAD_REQUEST);
    }

    #[test]
    fn network_errors_map_to_docker_statuses() {
        use skiff_network::NetworkError;
        // libnetwork's ActiveEndpointsError and a predefined network are Forbidden (403).
        let e: ApiError = NetworkError::Forbidden("has active endpoints".into()).into();
        assert_eq!(e.status, StatusCode::FORBIDDEN);
        let e: ApiError = NetworkError::NotFound("network x not found".into()).into();
        assert_eq!(e.status, StatusCode::NOT_FOUND);
        let e: ApiError = NetworkError::Conflict("port is already allocated".into()).into();
        assert_eq!(e.status, StatusCode::CONFLICT);
    }

    #[test]
    fn volume_not_found_uses_docker_wording() {
        let e: ApiError = VolumeError::NotFound("v1".into()).into();
        assert_eq!(e.status, StatusCode::NOT_FOUND);
        assert_eq!(e.message, "get v1: no such volume");
    }
}
