"""hotplex: a client for hotplexd (hotplex-protocol(7)).

    from hotplex import Client
    with Client() as c:
        for ev in c.execute("demo", "Say hello."):
            if ev.type == "answer":
                print(ev.data["text"], end="")

Standard library only; AsyncClient is the same for asyncio.
"""

from ._async import AsyncAttachment, AsyncClient
from ._proto import (DEFAULT_SOCKET, ConnectionLost, Event, HotplexError,
                     PermissionRequest)
from ._sync import Attachment, Client

__version__ = "0.1.0"
__all__ = ["Client", "AsyncClient", "Event", "HotplexError",
           "ConnectionLost", "PermissionRequest", "Attachment",
           "AsyncAttachment", "DEFAULT_SOCKET"]
