import assert from "node:assert/strict";
import { scryptSync } from "node:crypto";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { after, before, describe, it } from "node:test";
import { InvalidArgumentError, InvalidConfigError } from "../../common/src/errors.js";
import {
  MAX_PASSWORD_LENGTH,
  MIN_PASSWORD_LENGTH,
  hashPassword,
  isPasswordHash,
  parsePasswordHash,
  readPasswordFile,
  validatePassword,
  verifyPassword,
} from "../../common/src/security/password.js";

describe("password hashing", () => {
  let stored = "";
  before(async () => {
    stored = await hashPassword("correct horse");
  });

  it("encodes scrypt$14$8$1$<16-byte salt>$<32-byte hash>", () => {
    const parts = stored.split("$");
    assert.equal(parts.length, 6);
    assert.deepEqual(parts.slice(0, 4), ["scrypt", "14", "8", "1"]);
    assert.equal(Buffer.from(parts[4]!, "base64").length, 16);
    assert.equal(Buffer.from(parts[5]!, "base64").length, 32);
    assert.ok(isPasswordHash(stored));
  });

  it("salts every hash: the same password hashes differently twice", async () => {
    const again = await hashPassword("correct horse");
    assert.notEqual(again, stored);
    assert.ok(await verifyPassword("correct horse", again));
  });

  it("verifies the right password and refuses a wrong one", async () => {
    assert.equal(await verifyPassword("correct horse", stored), true);
    assert.equal(await verifyPassword("correct horsf", stored), false);
    assert.equal(await verifyPassword("", stored), false);
  });

  it("verifies with the parameters a hash carries, not the current defaults", async () => {
    const salt = Buffer.alloc(16, 7);
    const hash = scryptSync("older password", salt, 24, { N: 2 ** 10, r: 4, p: 2 });
    const encoded = `scrypt$10$4$2$${salt.toString("base64")}$${hash.toString("base64")}`;
    assert.equal(await verifyPassword("older password", encoded), true);
    assert.equal(await verifyPassword("other password", encoded), false);
  });

  it("answers false, never throws, for a malformed or tampered encoding", async () => {
    const [scheme, n, r, p, salt, hash] = stored.split("$") as [string, string, string, string, string, string];
    const flipped = Buffer.from(hash, "base64");
    flipped[0] = flipped[0]! ^ 1;
    const malformed = [
      "",
      "scrypt",
      `bcrypt$${n}$${r}$${p}$${salt}$${hash}`,
      `${scheme}$${n}$${r}$${p}$${salt}`,
      `${scheme}$${n}$${r}$${p}$${salt}$${hash}$extra`,
      `${scheme}$x$${r}$${p}$${salt}$${hash}`,
      `${scheme}$-1$${r}$${p}$${salt}$${hash}`,
      `${scheme}$0$${r}$${p}$${salt}$${hash}`,
      // 2^40 would need terabytes: refused before scrypt is asked.
      `${scheme}$40$${r}$${p}$${salt}$${hash}`,
      `${scheme}$${n}$0$${p}$${salt}$${hash}`,
      `${scheme}$${n}$${r}$99$${salt}$${hash}`,
      `${scheme}$${n}$${r}$${p}$not*base64$${hash}`,
      `${scheme}$${n}$${r}$${p}$${salt}$`,
      `${scheme}$${n}$${r}$${p}$${salt}$${Buffer.alloc(4).toString("base64")}`,
      `${scheme}$${n}$${r}$${p}$${salt}$${flipped.toString("base64")}`,
    ];
    for (const encoded of malformed) {
      assert.equal(await verifyPassword("correct horse", encoded), false, encoded);
    }
    assert.equal(parsePasswordHash(42), undefined);
    assert.equal(isPasswordHash(`${scheme}$40$${r}$${p}$${salt}$${hash}`), false);
  });
});

describe("password files", () => {
  let dir = "";
  before(() => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), "sluice-"));
  });
  after(() => fs.rmSync(dir, { recursive: true, force: true }));

  const write = (name: string, content: string): string => {
    const file = path.join(dir, name);
    fs.writeFileSync(file, content);
    return file;
  };

  it("reads the first line without its CR/LF", () => {
    assert.equal(readPasswordFile(write("lf", "s3cret-pass\n")), "s3cret-pass");
    assert.equal(readPasswordFile(write("crlf", "s3cret-pass\r\nsecond line\r\n")), "s3cret-pass");
    assert.equal(readPasswordFile(write("bare", "s3cret-pass")), "s3cret-pass");
    assert.equal(readPasswordFile(write("spaces", " with spaces \n")), " with spaces ");
  });

  it("refuses an empty first line, naming the file and never the content", () => {
    const file = write("empty-first", "\nhidden-secret\n");
    assert.throws(
      () => readPasswordFile(file),
      (err: unknown) => err instanceof InvalidConfigError && err.message.includes(file) && !err.message.includes("hidden-secret"),
    );
    assert.throws(() => readPasswordFile(write("empty", "")), InvalidConfigError);
  });

  it("refuses a missing or unreadable file with InvalidConfigError naming it", () => {
    const missing = path.join(dir, "nope");
    assert.throws(() => readPasswordFile(missing), (err: unknown) => err instanceof InvalidConfigError && err.message.includes(missing) && err.message.includes("ENOENT"));
    assert.throws(() => readPasswordFile(dir), (err: unknown) => err instanceof InvalidConfigError && err.message.includes(dir));
  });
});

describe("password validation", () => {
  it(`accepts ${MIN_PASSWORD_LENGTH} to ${MAX_PASSWORD_LENGTH} characters`, () => {
    assert.equal(validatePassword("12345678"), "12345678");
    assert.equal(validatePassword("x".repeat(1024)), "x".repeat(1024));
  });

  it("refuses shorter or longer ones without repeating them", () => {
    for (const password of ["short12", "", "y".repeat(1025)]) {
      assert.throws(
        () => validatePassword(password),
        (err: unknown) => err instanceof InvalidArgumentError && (password === "" || !err.message.includes(password)) && err.message.includes("8 to 1024"),
      );
    }
    assert.throws(() => validatePassword(12345678), InvalidArgumentError);
  });
});
