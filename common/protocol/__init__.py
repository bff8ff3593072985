"""The agent <-> controller protocol: msgpack maps over one binary WebSocket.

Every frame is a map with the type `t` and protocol version `v`. Decoding
validates types and bounds, so a malformed frame is a ProtocolError, never a
crash or an unchecked value further in.

fields: reading a frame's fields, checked, and ProtocolError; status: what a heartbeat
reports (bots, pool, market-data proxy, backups); frames: hello, heartbeat and the
desired state; requests: log, restore and files requests and their answers; codec: encode and
decode.
"""

from common.heartbeat_wire import MAX_BOTS_PER_FRAME, MAX_UPSTREAMS, PROTOCOL_VERSION
from common.protocol.codec import MAX_FRAME_BYTES, Message, decode, decode_general, encode
from common.protocol.fields import (
    MAX_FILE_BYTES,
    ProtocolError,
    check_relpath,
    check_restore_point,
)
from common.protocol.frames import (
    AGENT_FEATURES,
    LAUNCH_MODES,
    MAX_ARGS,
    BotSpec,
    Desired,
    Heartbeat,
    Hello,
)
from common.protocol.requests import (
    FilesRequest,
    FilesResponse,
    LogRequest,
    LogResponse,
    Response,
    RestoreRequest,
    RestoreResponse,
)
from common.protocol.status import (
    PORT_HOLDERS,
    BackupState,
    BotStatus,
    MarketDataStats,
    PoolStats,
    UpstreamStats,
)

__all__ = [
    "AGENT_FEATURES",
    "LAUNCH_MODES",
    "MAX_ARGS",
    "MAX_BOTS_PER_FRAME",
    "MAX_FILE_BYTES",
    "MAX_FRAME_BYTES",
    "MAX_UPSTREAMS",
    "PORT_HOLDERS",
    "PROTOCOL_VERSION",
    "BackupState",
    "BotSpec",
    "BotStatus",
    "Desired",
    "FilesRequest",
    "FilesResponse",
    "Heartbeat",
    "Hello",
    "LogRequest",
    "LogResponse",
    "MarketDataStats",
    "Message",
    "PoolStats",
    "ProtocolError",
    "Response",
    "RestoreRequest",
    "RestoreResponse",
    "UpstreamStats",
    "check_relpath",
    "check_restore_point",
    "decode",
    "decode_general",
    "encode",
]
