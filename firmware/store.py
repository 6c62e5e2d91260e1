"""Small persistent key-value state (boot attempts, recently rated cases): a JSON file replaced
atomically, so a power cut leaves the old or the new version, never a mix."""

import json

from firmware.flashfs import join


class Store:
    def __init__(self, fs, root, name="state.json"):
        self.fs = fs
        self.path = join(root, name)
        self.data = {}

    def load(self):
        raw = self.fs.read(self.path)
        self.data = {}
        if raw:
            try:
                data = json.loads(raw)
                if isinstance(data, dict):
                    self.data = data
            except ValueError:
                pass  # unreadable: start afresh (nothing in here may hold a rating)
        return self

    def get(self, key, default=None):
        return self.data.get(key, default)

    def set(self, key, value):
        self.data[key] = value

    def save(self):
        self.fs.write_atomic(self.path, json.dumps(self.data).encode())
