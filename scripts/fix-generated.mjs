// Post-processes ts-proto output so `bytes` fields are views, not copies.
//
// ts-proto wraps every decoded `bytes` field and every encoded message in Buffer.from(),
// which copies. Record batches are tens of KiB and cross the broker at hundreds of MB/s, so
// we turn those into zero-copy views of the buffer gRPC handed us (grpc-js allocates a fresh
// buffer per message, so a view stays valid after the call returns).
import { readdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";

const dir = new URL("../proto/gen/sluice/v1/", import.meta.url).pathname;
for (const name of readdirSync(dir)) {
  if (!name.endsWith(".ts")) continue;
  const path = join(dir, name);
  const before = readFileSync(path, "utf8");
  const after = before
    .replaceAll("Buffer.from(reader.bytes())", "asBuffer(reader.bytes())")
    .replace(/Buffer\.from\((\w+)\.encode\(value\)\.finish\(\)\)/g, "asBuffer($1.encode(value).finish())");
  if (after === before) continue;
  const helper =
    "\n/** A Buffer view over the same memory (no copy). */\n" +
    "function asBuffer(bytes: Uint8Array): Buffer {\n" +
    "  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);\n" +
    "}\n";
  writeFileSync(path, after + helper);
}
