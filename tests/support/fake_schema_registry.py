#!/usr/bin/env python3
"""A Confluent-Schema-Registry-compatible test server (the subset callstream uses).

No real registry can be installed from the package registries this project's machines reach
(Confluent's is not on Maven Central, Karapace is not on PyPI), so the tests run against this
double. It speaks the same REST API: POST /subjects/{s}/versions (register), POST /subjects/{s}
(look up), GET /subjects/{s}/versions/latest, GET /schemas/ids/{id}, PUT /config/{s}. Its
compatibility check is deliberately strict: under the default level (BACKWARD), any schema that
differs from the subject's latest is refused with 409, as a real registry refuses an incompatible
one; under NONE, a new version is registered.

Prints `port=<N>` on stdout once it listens on 127.0.0.1, on the port given as its argument or,
without one, on a free port. With a certificate and a key file (PEM) as further arguments, it
speaks HTTPS. With FAKE_REGISTRY_UNAVAILABLE=N in its environment, it answers its first N
requests with 503, as a registry does while it starts or elects its leader.
"""
import json
import os
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

subjects = {}  # subject -> list of (id, canonical schema text, original text)
schemas = {}  # id -> original text
compat = {}  # subject -> level
next_id = [1]
unavailable = [int(os.environ.get("FAKE_REGISTRY_UNAVAILABLE", "0"))]


def canonical(text):
    return json.dumps(json.loads(text), sort_keys=True, separators=(",", ":"))


class Handler(BaseHTTPRequestHandler):
    def log_message(self, *args):
        pass

    def reply(self, status, body):
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/vnd.schemaregistry.v1+json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def body(self):
        length = int(self.headers.get("Content-Length", "0"))
        return json.loads(self.rfile.read(length) or b"{}")

    def do_POST(self):
        if unavailable[0] > 0:
            unavailable[0] -= 1
            self.body()
            return self.reply(503, {"error_code": 50003, "message": "not available yet"})
        parts = self.path.strip("/").split("/")
        try:
            request = self.body()
            text = request["schema"]
            schema = canonical(text)
        except (ValueError, KeyError) as e:
            return self.reply(422, {"error_code": 42201, "message": f"Invalid schema: {e}"})
        if len(parts) == 3 and parts[0] == "subjects" and parts[2] == "versions":
            subject = parts[1]
            versions = subjects.setdefault(subject, [])
            for sid, canon, _ in versions:
                if canon == schema:
                    return self.reply(200, {"id": sid})
            if versions and compat.get(subject, "BACKWARD") != "NONE":
                return self.reply(409, {
                    "error_code": 409,
                    "message": f"Schema being registered is incompatible with an earlier schema for subject \"{subject}\"",
                })
            sid = next_id[0]
            next_id[0] += 1
            versions.append((sid, schema, text))
            schemas[sid] = text
            return self.reply(200, {"id": sid})
        if len(parts) == 2 and parts[0] == "subjects":
            subject = parts[1]
            for version, (sid, canon, original) in enumerate(subjects.get(subject, []), start=1):
                if canon == schema:
                    return self.reply(200, {"subject": subject, "version": version, "id": sid, "schema": original})
            return self.reply(404, {"error_code": 40403, "message": "Schema not found"})
        return self.reply(404, {"error_code": 404, "message": "Not found"})

    def do_GET(self):
        parts = self.path.strip("/").split("/")
        if len(parts) == 4 and parts[0] == "subjects" and parts[2:] == ["versions", "latest"]:
            versions = subjects.get(parts[1])
            if not versions:
                return self.reply(404, {"error_code": 40401, "message": "Subject not found"})
            sid, _, original = versions[-1]
            return self.reply(200, {"subject": parts[1], "version": len(versions), "id": sid, "schema": original})
        if len(parts) == 3 and parts[:2] == ["schemas", "ids"] and parts[2].isdigit():
            text = schemas.get(int(parts[2]))
            if text is None:
                return self.reply(404, {"error_code": 40403, "message": "Schema not found"})
            return self.reply(200, {"schema": text})
        if parts == ["subjects"]:
            return self.reply(200, sorted(subjects))
        return self.reply(404, {"error_code": 404, "message": "Not found"})

    def do_PUT(self):
        parts = self.path.strip("/").split("/")
        if len(parts) == 2 and parts[0] == "config":
            level = self.body().get("compatibility", "BACKWARD")
            compat[parts[1]] = level
            return self.reply(200, {"compatibility": level})
        return self.reply(404, {"error_code": 404, "message": "Not found"})


def main():
    port = int(sys.argv[1]) if len(sys.argv) > 1 else 0
    server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    if len(sys.argv) > 3:
        import ssl

        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(sys.argv[2], sys.argv[3])
        server.socket = context.wrap_socket(server.socket, server_side=True)
    print(f"port={server.server_address[1]}", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    sys.exit(main())
