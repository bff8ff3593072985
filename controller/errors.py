"""The controller's exception hierarchy; API errors carry their HTTP status."""


class FtpoolError(Exception):
    """Base of every error the controller raises on purpose."""

    status = 500


class BadRequest(FtpoolError):
    status = 400


class Unauthorized(FtpoolError):
    status = 401


class Forbidden(FtpoolError):
    status = 403


class QuotaExceeded(Forbidden):
    """A user has as many bots as their quota allows; `extra` goes into the JSON answer."""

    def __init__(self, message: str, **extra: object) -> None:
        super().__init__(message)
        self.extra = extra


class NotFound(FtpoolError):
    status = 404


class Conflict(FtpoolError):
    status = 409


class PayloadTooLarge(FtpoolError):
    status = 413


class BotUnavailable(FtpoolError):
    """The bot is known but not reachable right now (stopped, pool down)."""

    status = 503


class CapacityExhausted(FtpoolError):
    """No port block is left for another pool."""

    status = 507


class RuntimeFailure(FtpoolError):
    """The pool runtime (processes, Docker) failed to do what was asked."""

    status = 502


class PoolExists(RuntimeFailure):
    """A pool was to be made where one exists that this creation did not make: it may run
    bots the store does not know, so it is left alone."""


class StoreError(FtpoolError):
    """The SQLite store cannot be opened, read or migrated; fatal at start-up."""
