import assert from "node:assert/strict";
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, describe, it } from "node:test";
import { pino } from "pino";
import { SluiceError } from "../../common/src/errors.js";
import { silentLogger } from "../../common/src/logger.js";
import {
  DATA_FORMAT_FILE,
  DATA_FORMAT_VERSION,
  openDataFormat,
  readDataFormat,
  sluiceVersion,
} from "../../broker/src/storage/data-format.js";

const dirs: string[] = [];
afterEach(() => {
  for (const dir of dirs.splice(0)) rmSync(dir, { recursive: true, force: true });
});

function tempDataDir(): string {
  const dir = mkdtempSync(join(tmpdir(), "sluice-"));
  dirs.push(dir);
  return dir;
}

/** A directory as a broker before the marker left it: logs, meta, role.json. */
function formatOneDir(): string {
  const dir = tempDataDir();
  mkdirSync(join(dir, "logs", "orders-0"), { recursive: true });
  writeFileSync(join(dir, "logs", "orders-0", "00000000000000000000.log"), "");
  mkdirSync(join(dir, "meta"));
  writeFileSync(join(dir, "role.json"), '{"epoch":1,"master":0}');
  return dir;
}

function marker(dir: string): { format: number; writtenBy: string; createdAt: string } {
  return JSON.parse(readFileSync(join(dir, DATA_FORMAT_FILE), "utf8")) as { format: number; writtenBy: string; createdAt: string };
}

/** Every file under `dir` with its bytes, to prove a refusal touched nothing. */
function snapshot(dir: string): Map<string, string> {
  const files = new Map<string, string>();
  for (const entry of readdirSync(dir, { recursive: true, withFileTypes: true })) {
    const path = join(entry.parentPath, entry.name);
    files.set(path, entry.isFile() ? readFileSync(path, "hex") : "<dir>");
  }
  return files;
}

function capturingLogger(): { logger: typeof silentLogger; lines: () => Array<{ level: number; msg: string }> } {
  const written: string[] = [];
  const logger = pino({ level: "info" }, { write: (line: string) => void written.push(line) });
  return { logger, lines: () => written.map((line) => JSON.parse(line) as { level: number; msg: string }) };
}

const fixedNow = () => new Date("2025-11-24T08:32:00.000Z");

describe("data directory format marker", () => {
  it("a new directory is marked at once with the current format, the package version and the time", async () => {
    const dir = join(tempDataDir(), "not-yet-there");
    const opened = await openDataFormat(dir, silentLogger, { now: fixedNow });
    assert.equal(opened.version, DATA_FORMAT_VERSION);
    assert.equal(opened.upgradedFrom, undefined);
    const written = marker(dir);
    assert.deepEqual(written, { format: 2, writtenBy: `sluice ${sluiceVersion()}`, createdAt: "2025-11-24T08:32:00.000Z" });
    const manifest = JSON.parse(readFileSync(new URL("../../package.json", import.meta.url), "utf8")) as { version: string };
    assert.equal(sluiceVersion(), manifest.version);
    await opened.commit();
    assert.deepEqual(marker(dir), written, "commit of a new directory changes nothing");
    assert.deepEqual(readdirSync(dir), [DATA_FORMAT_FILE], "no temporary file left behind");
  });

  it("a directory holding only something Sluice never writes (lost+found) is new", async () => {
    const dir = tempDataDir();
    mkdirSync(join(dir, "lost+found"));
    const opened = await openDataFormat(dir, silentLogger);
    assert.equal(opened.upgradedFrom, undefined);
    assert.equal(marker(dir).format, 2);
  });

  it("a directory with data and no marker is format 1, marked 2 only by commit, with one info line", async () => {
    const dir = formatOneDir();
    const { logger, lines } = capturingLogger();
    const opened = await openDataFormat(dir, logger, { now: fixedNow, softwareVersion: "9.9.9" });
    assert.equal(opened.version, 2);
    assert.equal(opened.upgradedFrom, 1);
    assert.equal(readDataFormat(dir), undefined, "nothing written before the logs opened");
    assert.equal(lines().length, 0);

    await opened.commit();
    assert.deepEqual(marker(dir), { format: 2, writtenBy: "sluice 9.9.9", createdAt: "2025-11-24T08:32:00.000Z" });
    const upgraded = lines().filter((line) => /upgraded/.test(line.msg));
    assert.equal(upgraded.length, 1);
    assert.equal(upgraded[0]!.level, 30, "info");
    assert.ok(readFileSync(join(dir, "role.json"), "utf8").includes('"epoch":1'), "the rest of the directory is untouched");

    const again = await openDataFormat(dir, silentLogger);
    assert.equal(again.upgradedFrom, undefined, "the second start finds format 2");
  });

  it("a failed recovery (no commit) leaves a format-1 directory without a marker", async () => {
    const dir = formatOneDir();
    const before = snapshot(dir);
    await openDataFormat(dir, silentLogger);
    assert.deepEqual(snapshot(dir), before);
  });

  it("a newer format is refused, naming both versions and what to do, and the directory is untouched", async () => {
    const dir = formatOneDir();
    writeFileSync(join(dir, DATA_FORMAT_FILE), '{"format":99,"writtenBy":"sluice 7.0.0","createdAt":"2030-01-01T00:00:00.000Z"}\n');
    const before = snapshot(dir);
    await assert.rejects(openDataFormat(dir, silentLogger), (err: unknown) => {
      assert.ok(err instanceof SluiceError);
      assert.equal(err.code, "UNSUPPORTED_DATA_FORMAT");
      assert.equal(err.retriable, false);
      assert.match(err.message, /format 99/);
      assert.match(err.message, /sluice 7\.0\.0/);
      assert.match(err.message, /formats 1 to 2/);
      assert.match(err.message, /upgrade Sluice/);
      assert.ok(err.message.includes(dir));
      return true;
    });
    assert.deepEqual(snapshot(dir), before);
  });

  for (const [what, content] of [
    ["not JSON", "format=2\n"],
    ["empty", ""],
    ["no format", '{"writtenBy":"sluice 0.1.0"}'],
    ["a string format", '{"format":"2"}'],
    ["format 0", '{"format":0}'],
    ["a fractional format", '{"format":2.5}'],
    ["a JSON array", "[2]"],
  ] as const) {
    it(`a corrupt marker (${what}) is INVALID_CONFIG naming the file, and nothing is written`, async () => {
      const dir = formatOneDir();
      writeFileSync(join(dir, DATA_FORMAT_FILE), content);
      const before = snapshot(dir);
      await assert.rejects(openDataFormat(dir, silentLogger), (err: unknown) => {
        assert.ok(err instanceof SluiceError);
        assert.equal(err.code, "INVALID_CONFIG");
        assert.ok(err.message.includes(join(dir, DATA_FORMAT_FILE)), err.message);
        return true;
      });
      assert.deepEqual(snapshot(dir), before);
    });
  }

  it("an explicit format-1 marker is upgraded like a directory without one", async () => {
    const dir = formatOneDir();
    writeFileSync(join(dir, DATA_FORMAT_FILE), '{"format":1}');
    const opened = await openDataFormat(dir, silentLogger);
    assert.equal(opened.upgradedFrom, 1);
    assert.equal(marker(dir).format, 1);
    await opened.commit();
    assert.equal(marker(dir).format, 2);
  });
});
