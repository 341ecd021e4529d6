"""Seed a fresh rekey for the schemathesis run and write its config.

Generated requests seldom pass validation on their own: a random `provider`
is not in the catalog, a random `id` names no row, a random scope is not a
scope. So this creates a few real resources through the API (connections,
an OAuth integration, a webhook with a delivery, a connect session) and
writes a schemathesis config whose dictionaries offer their ids and the
valid enum values to generation *some* of the time (random values are still
generated the rest of the time). Everything points at loopback or at
catalog hosts, which the network namespace makes unreachable.

Usage: schemathesis_seed.py BASE_URL API_KEY CONFIG_PATH
"""

import json
import sys
import urllib.error
import urllib.request

base, key, config_path = sys.argv[1:4]


def call(method, path, body=None):
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(
        base + path,
        data=data,
        method=method,
        headers={"Authorization": "Bearer " + key, "Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(req, timeout=20) as r:
            text = r.read()
            return json.loads(text) if text else None
    except urllib.error.HTTPError as e:
        sys.exit(f"seeding: {method} {path} answered {e.code}: {e.read()[:300]!r}")


connections = []
for i, (provider, kind, creds) in enumerate(
    [
        ("crossbeam", "api_key", {"key": "seed-key-0123456789"}),
        ("custom-rest", "api_key", {"key": "seed-key-abcdefghij", "placement": "query", "name": "api_key"}),
        ("custom-rest", "basic", {"username": "seed", "password": "seed-password-42"}),
        ("mixpanel", "api_key", {"key": "seed-key-klmnopqrst"}),
    ]
    * 3
):
    c = call(
        "POST",
        "/api/v1/connections",
        {
            "provider": provider,
            "kind": kind,
            "display_name": f"seed {i}",
            "tags": ["seed"],
            "credentials": creds,
        },
    )
    connections.append(c["id"])

integrations = [
    call(
        "POST",
        "/api/v1/integrations",
        {"provider": "crossbeam", "display_name": f"seed app {i}", "client_id": "seed-client",
         "client_secret": "seed-secret-1234"},
    )["id"]
    for i in range(3)
]
integration = integrations[0]

webhooks = []
deliveries = []
for i in range(3):
    w = call(
        "POST",
        "/api/v1/webhooks",
        {"url": "http://127.0.0.1:9/hook", "events": ["connection.*"], "description": f"seed {i}"},
    )["webhook"]["id"]
    call("POST", f"/api/v1/webhooks/{w}/test")
    webhooks.append(w)
    deliveries += [d["id"] for d in call("GET", f"/api/v1/webhooks/{w}/deliveries")["items"]]

tokens = [
    call("POST", "/api/v1/connect-sessions", {"provider": "crossbeam", "kind": "api_key"})["token"],
    call("POST", "/api/v1/connect-sessions", {"integration": integration})["token"],
]

catalog = [p["id"] for p in call("GET", "/api/v1/providers")["items"]]
providers = ["crossbeam", "custom-rest", "mixpanel", "custom-oidc", "custom-oauth2"] + catalog[:10]

# DELETE takes the ids of its own third of each kind, so that the other
# operations still find rows after the deletes.
dictionaries = {
    "connection_ids": connections[4:],
    "doomed_connection_ids": connections[:4],
    "integration_ids": integrations[1:],
    "doomed_integration_ids": integrations[:1],
    "webhook_ids": webhooks[1:],
    "doomed_webhook_ids": webhooks[:1],
    "delivery_ids": deliveries or ["dlv_none"],
    "tokens": tokens,
    "providers": sorted(set(providers)),
    "kinds": ["api_key", "basic", "headers", "aws_access_key", "service_account_json", "rsa_key_pair",
              "oauth2_authorization_code", "oauth2_client_credentials"],
    "statuses": ["pending", "active", "degraded", "needs_reauth", "disabled", "revoke_pending", "revoked"],
    "scopes": ["connections:read", "connections:write", "credentials:read", "audit:read", "admin"],
    "events": ["connection.*", "connection.status_changed", "connection.created", "*"],
    "names": ["seed", "CI key", "Acme CRM"],
    "urls": ["http://127.0.0.1:9/hook", "https://hooks.example.com/rekey"],
}


def toml_list(values):
    return "[" + ", ".join(json.dumps(v) for v in values) + "]"


lines = [
    "# Written by .ci/schemathesis_seed.py for one run; not committed.",
    "",
    "# Each run starts clean: no replay of earlier failures from a local cache.",
    "[cache]",
    "enabled = false",
    "",
    "[dictionaries]",
]
for name, values in dictionaries.items():
    lines.append(f"{name} = {{ values = {toml_list(values)} }}")


def bind(name, p=0.5):
    return f'{{ dictionary = "{name}", probability = {p} }}'


lines += [
    "",
    "[parameters]",
    f'"body.provider" = {bind("providers", 0.7)}',
    f'"query.provider" = {bind("providers")}',
    f'"body.kind" = {bind("kinds", 0.7)}',
    f'"query.kind" = {bind("kinds")}',
    f'"query.status" = {bind("statuses")}',
    f'"body.scopes[*]" = {bind("scopes", 0.7)}',
    f'"body.events[*]" = {bind("events", 0.7)}',
    f'"body.integration" = {bind("integration_ids")}',
    f'"body.reauthorize" = {bind("connection_ids")}',
    f'"body.display_name" = {bind("names")}',
    f'"body.name" = {bind("names")}',
    f'"body.url" = {bind("urls")}',
    f'"path.delivery_id" = {bind("delivery_ids", 0.7)}',
    f'"path.token" = {bind("tokens", 0.7)}',
]
for kind in ["connections", "integrations", "webhooks"]:
    lines += [
        "",
        "[[operations]]",
        f'include-path = "/api/v1/{kind}/{{id}}"',
        'include-method = "DELETE"',
        f'parameters = {{ "path.id" = {bind("doomed_" + kind[:-1] + "_ids", 0.7)} }}',
        "",
        "[[operations]]",
        f'include-path-regex = "^/api/v1/{kind}/\\\\{{id\\\\}}"',
        'exclude-method = "DELETE"',
        f'parameters = {{ "path.id" = {bind(kind[:-1] + "_ids", 0.7)} }}',
    ]

with open(config_path, "w") as f:
    f.write("\n".join(lines) + "\n")
print(
    f"seeded {len(connections)} connections, {len(integrations)} integrations, {len(webhooks)} webhooks with "
    f"{len(deliveries)} deliveries, "
    f"{len(tokens)} connect sessions"
)
