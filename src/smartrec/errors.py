"""The exception tree. The API maps each class to an RFC 9457 problem with a fixed status."""

from __future__ import annotations


class SmartrecError(Exception):
    """Base of every error smartrec raises on purpose."""

    status: int = 500
    title: str = "Internal error"

    def __init__(self, message: str = "", *, field: str | None = None) -> None:
        super().__init__(message)
        self.detail = message
        self.field = field


class ConfigError(SmartrecError):
    status = 500
    title = "Configuration error"


class ValidationFailed(SmartrecError):
    status = 422
    title = "Invalid request"


class PayloadTooLarge(SmartrecError):
    status = 413
    title = "Payload too large"


class NotFound(SmartrecError):
    status = 404
    title = "Not found"


class Conflict(SmartrecError):
    status = 409
    title = "Conflict"


class ModelError(SmartrecError):
    status = 500
    title = "Model error"


class NotFittedError(ModelError):
    title = "Model not fitted"


class TrainingError(SmartrecError):
    status = 422
    title = "Training failed"


class NotReady(SmartrecError):
    status = 503
    title = "Service not ready"


class DatasetError(SmartrecError):
    status = 422
    title = "Dataset error"


class Unauthorized(SmartrecError):
    status = 401
    title = "Unauthorized"


class Forbidden(SmartrecError):
    status = 403
    title = "Forbidden"


class UnsupportedMediaType(SmartrecError):
    status = 415
    title = "Unsupported media type"
