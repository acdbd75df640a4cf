"""WPI secure mode: the bootstrap items, and the client certificate they carry.

Bootstrapping without PIN (reference §13, [DG p.64-65]): one ``WriteItems`` with
``goto-secure-mode=nopin``, the phone's client certificate *and key*, the server's CA
and ``dls-secure-port``. The phone accepts, gets ``CleanUp``, and from then on opens its
sessions on the secure port with that certificate; the device path then refuses its MAC
on the default port.

The items travel through the engine as *desired items*: the phone never reports
certificates in ``ReadAllItems`` [DG p.30], so the engine always finds them different
and writes them. The certificate is costly (an RSA key) and must never sit in a session
row, so the desired item holds :data:`CERTIFICATE_PLACEHOLDER`, and :func:`issue_in_reply`
swaps in a freshly issued certificate only when the engine actually writes it.

Encodings are our guess, the sources do not capture them [gap §17]:
``dls-client-certificate`` is the PEM certificate followed by its PEM (PKCS#8) private
key; ``dls-server-ca`` is the PEM CA certificate.
"""

from __future__ import annotations

import asyncio

from dls.pki import Pki, issue_device_certificate
from dls.provisioning.wpi.items import Item
from dls.provisioning.wpi.messages import DLSMessage, WriteItems

__all__ = [
    "BOOTSTRAP_ITEMS",
    "CERTIFICATE_PLACEHOLDER",
    "DLS_CLIENT_CERTIFICATE",
    "DLS_SECURE_PORT",
    "DLS_SERVER_CA",
    "GOTO_SECURE_MODE",
    "GOTO_SECURE_MODE_NOPIN",
    "bootstrap_items",
    "issue_in_reply",
]

# Item names [DG p.40/64, GS5], as reference §10 spells them.
GOTO_SECURE_MODE = "goto-secure-mode"
GOTO_SECURE_MODE_NOPIN = "nopin"
DLS_SECURE_PORT = "dls-secure-port"
DLS_CLIENT_CERTIFICATE = "dls-client-certificate"
DLS_SERVER_CA = "dls-server-ca"
BOOTSTRAP_ITEMS = frozenset(
    {GOTO_SECURE_MODE, DLS_SECURE_PORT, DLS_CLIENT_CERTIFICATE, DLS_SERVER_CA}
)

# Stands in for the certificate until the engine decides to send it; never leaves the
# process (issue_in_reply replaces it, and the inventory store drops bootstrap items).
CERTIFICATE_PLACEHOLDER = "(issued when sent)"


def bootstrap_items(server_ca_pem: str, secure_port: int) -> tuple[Item, ...]:
    # The switch comes last, after what it needs, in case a firmware applies in order [I].
    return (
        Item(DLS_SERVER_CA, server_ca_pem, 1),
        Item(DLS_CLIENT_CERTIFICATE, CERTIFICATE_PLACEHOLDER),
        Item(DLS_SECURE_PORT, str(secure_port)),
        Item(GOTO_SECURE_MODE, GOTO_SECURE_MODE_NOPIN),
    )


async def issue_in_reply(reply: DLSMessage, pki: Pki, mac: str) -> DLSMessage:
    """``reply`` with a new client certificate for ``mac`` where the placeholder stands."""
    command = reply.command
    if not isinstance(command, WriteItems) or not any(
        item.value == CERTIFICATE_PLACEHOLDER for item in command.items
    ):
        return reply
    # RSA key generation takes tens of milliseconds: off the event loop.
    issued = await asyncio.to_thread(issue_device_certificate, pki, mac)
    credentials = (issued.certificate_pem + issued.key_pem).decode("ascii")
    items = tuple(
        Item(item.name, credentials, item.index) if item.value == CERTIFICATE_PLACEHOLDER else item
        for item in command.items
    )
    return DLSMessage(reply.nonce, WriteItems(items))
