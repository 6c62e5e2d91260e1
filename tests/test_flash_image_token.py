"""`flash.py image --device ... --registry URL` takes the gateway token as provision does (the flag or
FLASH_GATEWAY_TOKEN), and never prints it, even when the gateway's refusal echoes it."""

import http.server
import json
import threading

from tests.flash_support import bundle_dir, micropython_image, run

TOKEN = "tok-0123456789abcdef"   # HTTP headers are latin-1


class _Gateway(http.server.BaseHTTPRequestHandler):
    def _answer(self, status, body):
        data = json.dumps(body, ensure_ascii=False).encode()
        self.send_response(status)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self):
        if self.headers.get("Authorization") != "Bearer " + TOKEN:
            return self._answer(401, {"error": "bad token %s" % self.headers.get("Authorization")})
        self._answer(404, {"error": "no such device"})

    def do_POST(self):
        self.rfile.read(int(self.headers["Content-Length"]))
        self._answer(400, {"error": "refused, you sent %s" % self.headers.get("Authorization")})

    def log_message(self, *a):
        pass


def test_image_registers_with_the_token_from_the_environment_and_masks_it(tmp_path, monkeypatch):
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Gateway)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        fw = tmp_path / "mp.bin"
        fw.write_bytes(micropython_image("esp32"))
        monkeypatch.setenv("FLASH_GATEWAY_TOKEN", TOKEN)
        code, text = run("image", "--firmware", fw, "--bundle", bundle_dir(), "--out", tmp_path / "f.bin",
                         "--device", "ev-0000aabbccdd", "--board", "five_button", "--transport", "rs485",
                         "--window", "12", "--rs485-baud", "9600", "--registry", "http://127.0.0.1:%d" % server.server_port)
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)
    assert code != 0 and "refused, you sent Bearer" in text   # got past the token check (POST)
    assert TOKEN not in text and "****" in text
