// Runs one Python script under the MicroPython 1.29 WebAssembly port.
//
// Job (JSON on stdin):
//   {"files": {"/abs/path": "text" | {"b64": "..."}},  // written into the virtual FS
//    "sys_path": ["/repo", ...],                        // prepended to sys.path
//    "script": "python source",                         // top-level `await` is allowed
//    "heapsize": 1048576}                               // optional, initial GC heap in bytes
//
// Exit status: 0 ok; 1 uncaught Python exception (traceback on stderr);
// N for SystemExit(N); 2 for a bad job or a failure of the runtime itself.
import { loadMicroPython } from "@micropython/micropython-webassembly-pyscript";

const RUNNER_ERROR = 2;

function readStdin() {
  return new Promise((resolve, reject) => {
    const chunks = [];
    process.stdin.on("data", (c) => chunks.push(c));
    process.stdin.on("end", () => resolve(Buffer.concat(chunks).toString("utf8")));
    process.stdin.on("error", reject);
  });
}

// Byte-wise sink: the package's line buffering would drop a final line without "\n".
function byteSink(stream) {
  let buf = [];
  const flush = () => {
    if (buf.length) {
      stream.write(Buffer.from(buf));
      buf = [];
    }
  };
  const put = (bytes) => {
    for (const b of bytes) {
      buf.push(b);
      if (b === 10 || buf.length >= 4096) flush();
    }
  };
  return { put, flush };
}

function fileBytes(value) {
  if (typeof value === "string") return value;
  if (value && typeof value.b64 === "string") return Buffer.from(value.b64, "base64");
  throw new Error("file content must be a string or {\"b64\": ...}");
}

function writeFiles(FS, files) {
  for (const [path, value] of Object.entries(files || {})) {
    if (!path.startsWith("/")) throw new Error(`file path must be absolute: ${path}`);
    const dir = path.slice(0, path.lastIndexOf("/"));
    if (dir) FS.mkdirTree(dir);
    FS.writeFile(path, fileBytes(value));
  }
}

// The traceback's last line is "SystemExit: <arg>" (or bare "SystemExit").
function systemExitCode(message, err) {
  const lines = message.trimEnd().split("\n");
  const last = lines[lines.length - 1];
  const arg = last.startsWith("SystemExit:") ? last.slice("SystemExit:".length).trim() : "";
  if (arg === "" || arg === "None") return 0;
  if (/^-?\d+$/.test(arg)) return Number(arg) & 0xff;
  err.put(Buffer.from(arg + "\n"));
  return 1;
}

async function main() {
  let job;
  try {
    job = JSON.parse(await readStdin());
    if (typeof job.script !== "string") throw new Error("job.script must be a string");
  } catch (e) {
    process.stderr.write(`mpy runner: bad job: ${e.message}\n`);
    return RUNNER_ERROR;
  }
  const out = byteSink(process.stdout);
  const err = byteSink(process.stderr);
  const options = { linebuffer: false, stdout: out.put, stderr: err.put };
  if (job.heapsize) options.heapsize = job.heapsize;
  let mp;
  try {
    mp = await loadMicroPython(options);
    writeFiles(mp.FS, job.files);
    const sysPath = JSON.stringify(job.sys_path || []);
    mp.runPython(`import sys\nfor _p in reversed(${sysPath}):\n    sys.path.insert(0, _p)\ndel _p`);
  } catch (e) {
    out.flush();
    process.stderr.write(`mpy runner: setup failed: ${e.stack || e}\n`);
    return RUNNER_ERROR;
  }
  try {
    await mp.runPythonAsync(job.script);
    return 0;
  } catch (e) {
    if (e && e.constructor && e.constructor.name === "PythonError") {
      if (e.type === "SystemExit") return systemExitCode(e.message, err);
      err.put(Buffer.from(e.message));
      return 1;
    }
    err.put(Buffer.from(`mpy runner: runtime failure: ${e && (e.stack || e)}\n`));
    return RUNNER_ERROR;
  } finally {
    out.flush();
    err.flush();
  }
}

// Exit explicitly: asyncio tasks the script left pending must not keep Node alive.
process.exit(await main());
