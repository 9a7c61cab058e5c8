"""Webhooks reach only public addresses unless TALLYQL_WEBHOOK_ALLOW_PRIVATE (server-side
request forgery): refused at creation for literal addresses and local names, refused at
delivery for names that resolve to a non-public address, connected to the very address that
was checked, and the receiver's answer is never stored."""

from __future__ import annotations

import ipaddress
from pathlib import Path

import httpx
import pytest

from tallyql.config import Settings, load_settings
from tallyql.webhooks import transport as transport_module
from tallyql.webhooks.addresses import (
    AddressRefused,
    IPAddress,
    WebhookError,
    check_url,
    is_public,
)
from tallyql.webhooks.store import insert_webhook
from tests.conftest import Api
from tests.support.helpers import workspace_id_of
from tests.support.notify_helpers import (
    CREATE_WEBHOOK,
    DELIVERIES,
    alert_on_any_request,
    deliveries_when,
    fire,
    quiet_settings,
    webhook_receiver,
)

# (address, public?) decided from the IANA special-purpose registries, not from the code
ADDRESSES = [
    ("127.0.0.1", False),
    ("127.255.0.9", False),
    ("10.1.2.3", False),
    ("172.16.0.1", False),
    ("192.168.1.1", False),
    ("100.64.0.1", False),  # shared address space (carrier-grade NAT)
    ("169.254.169.254", False),  # link-local: cloud metadata services
    ("0.0.0.0", False),
    ("224.0.0.1", False),
    ("239.255.255.250", False),
    ("240.0.0.1", False),  # reserved
    ("255.255.255.255", False),
    ("192.0.2.10", False),  # documentation
    ("::1", False),
    ("::", False),
    ("fe80::1", False),
    ("fc00::1", False),
    ("fd12:3456::1", False),
    ("ff02::1", False),
    ("::ffff:127.0.0.1", False),  # IPv4-mapped
    ("::ffff:169.254.169.254", False),
    ("64:ff9b::a00:1", False),  # NAT64 of 10.0.0.1
    ("2002:7f00:1::", False),  # 6to4 of 127.0.0.1
    ("2001:db8::1", False),  # documentation
    ("8.8.8.8", True),
    ("93.184.216.34", True),
    ("1.1.1.1", True),
    ("2606:4700:4700::1111", True),
    ("::ffff:8.8.8.8", True),
    ("64:ff9b::808:808", True),  # NAT64 of 8.8.8.8
]


@pytest.mark.parametrize(("text", "public"), ADDRESSES)
def test_only_public_unicast_addresses_are_public(text: str, public: bool) -> None:
    assert is_public(ipaddress.ip_address(text)) is public


REFUSED_UNLESS_ALLOWED = [
    "http://127.0.0.1:8000/hook",
    "http://localhost/hook",
    "http://LOCALHOST./hook",
    "http://api.localhost/hook",
    "http://[::1]:9/hook",
    "http://169.254.169.254/latest/meta-data/",
    "http://[::ffff:127.0.0.1]/",
    "https://10.0.0.5/hook",
    "http://0.0.0.0:80/",
    "http://224.0.0.1/",
]
ALWAYS_REFUSED = [
    "ftp://example.com/hook",
    "file:///etc/passwd",
    "gopher://example.com/",
    "http:///nohost",
    "example.com/hook",
    "https://user:secret@example.com/hook",
    "https://token@example.com/hook",
    "http://example.com:99999/hook",
    "https://example.com/" + "a" * 2000,
]


@pytest.mark.parametrize("url", REFUSED_UNLESS_ALLOWED)
def test_private_targets_refused_at_creation_unless_allowed(url: str) -> None:
    with pytest.raises(WebhookError):
        check_url(url, allow_private=False)
    assert check_url(f"  {url} ", allow_private=True) == url


@pytest.mark.parametrize("url", ALWAYS_REFUSED)
def test_malformed_urls_refused(url: str) -> None:
    for allow in (False, True):
        with pytest.raises(WebhookError):
            check_url(url, allow_private=allow)


def test_public_urls_accepted() -> None:
    for url in (
        "https://hooks.example.com/x?y=1",
        "http://8.8.8.8:8080/",
        "https://[2606:4700::1]/",
    ):
        assert check_url(url, allow_private=False) == url


def test_the_setting_is_read_from_the_environment() -> None:
    assert load_settings({}).webhook_allow_private is False
    assert load_settings({"TALLYQL_WEBHOOK_ALLOW_PRIVATE": "1"}).webhook_allow_private is True


@pytest.fixture
def settings(database_url: str, tmp_path: Path) -> Settings:
    # the production default: private targets refused
    return quiet_settings(
        database_url, tmp_path, webhook_allow_private=False, webhook_max_attempts=2
    )


async def test_create_webhook_refuses_internal_targets(api: Api) -> None:
    key = await api.key()
    for url in REFUSED_UNLESS_ALLOWED + ALWAYS_REFUSED:
        payload = (await api.data(key, CREATE_WEBHOOK, {"input": {"url": url}}))["createWebhook"]
        assert payload["webhook"] is None and payload["secret"] is None, url
        assert payload["userErrors"] == [{"field": "url", "code": "INVALID"}], url
    hooks = await api.data(key, "{ webhooks { totalCount } }")
    assert hooks["webhooks"]["totalCount"] == 0


async def test_delivery_to_a_name_that_became_internal_is_refused_unsent(api: Api) -> None:
    """A webhook stored with a loopback target (as if its name had been repointed after
    creation) is refused at every attempt: the receiver never sees a request and the log
    holds our reason only."""
    key = await api.key()
    workspace = await workspace_id_of(api.services, key)
    with webhook_receiver() as receiver:
        port = receiver.url.split(":")[2].split("/")[0]
        urls = [receiver.url, f"http://localhost:{port}/hook"]
        async with api.services.db.write() as conn:
            hooks = [
                (await insert_webhook(conn, workspace, url, None, allow_private=True))[0]["id"]
                for url in urls
            ]
        await alert_on_any_request(api, key, hooks)
        await fire(api, key)
        nodes = await deliveries_when(api, key, 2)
        assert receiver.snapshot() == []
        for node in nodes:
            assert (node["status"], node["attempts"], node["lastStatusCode"]) == ("FAILED", 2, None)
            host = "127.0.0.1" if node["url"] == urls[0] else "localhost"
            reason = f"refused: {host} resolves to a non-public address"
            assert node["lastError"] == reason
            assert [a["error"] for a in node["attemptLog"]] == [reason, reason]
        failed = (await api.data(key, DELIVERIES, {"status": "FAILED"}))["webhookDeliveries"]
        assert failed["totalCount"] == 2


def _resolver(table: dict[str, list[str]]):  # type: ignore[no-untyped-def]
    async def resolve(host: str, port: int) -> list[IPAddress]:
        return [ipaddress.ip_address(a) for a in table[host]]

    return resolve


async def test_connects_to_the_checked_address_with_the_original_host(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The name exists in no DNS: the request can only arrive because the transport dialled
    the address its own resolver returned, while the Host header kept the name."""
    monkeypatch.setattr(transport_module, "resolve", _resolver({"hook.invalid": ["127.0.0.1"]}))
    with webhook_receiver() as receiver:
        port = int(receiver.url.split(":")[2].split("/")[0])
        url = f"http://hook.invalid:{port}/hook"
        transport = transport_module.PinnedTransport(allow_private=True)
        async with httpx.AsyncClient(transport=transport) as client:
            response = await client.post(url, content=b"{}")
        assert response.status_code == 200
        (got,) = receiver.snapshot()
        assert got.headers["Host"] == f"hook.invalid:{port}"
        assert got.path == "/hook"


async def test_a_name_with_any_internal_address_is_refused(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    table = {
        "mixed.invalid": ["93.184.216.34", "127.0.0.1"],
        "metadata.invalid": ["169.254.169.254"],
        "mapped.invalid": ["::ffff:10.0.0.1"],
        "none.invalid": [],
    }
    monkeypatch.setattr(transport_module, "resolve", _resolver(table))
    transport = transport_module.PinnedTransport(allow_private=False)
    async with httpx.AsyncClient(transport=transport) as client:
        for host in table:
            with pytest.raises(AddressRefused):
                await client.post(f"http://{host}/hook", content=b"{}")
