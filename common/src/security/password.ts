/**
 * Passwords: how they are hashed for the registry, checked, read from a file and validated.
 *
 * A stored password is one string, self-describing so the cost can be raised later without
 * breaking the hashes already stored (each is verified with the parameters it carries):
 *
 *   scrypt$<log2 N>$<r>$<p>$<salt, base64>$<hash, base64>
 *   e.g. scrypt$14$8$1$Zk3v…==$u8Qx…=
 */
import { randomBytes, scrypt, timingSafeEqual, type ScryptOptions } from "node:crypto";
import { readFileSync } from "node:fs";
import { InvalidArgumentError, InvalidConfigError } from "../errors.js";

const SCHEME = "scrypt";
/**
 * N = 2^14, r = 8, p = 1: the scrypt paper's parameters for interactive logins, and Node's own
 * defaults. Each hash costs 16 MiB (128 · N · r bytes) and some 30–60 ms of one libuv thread.
 * Servers verify a given password once and then compare an HMAC (credentials.ts), so a slower
 * hash would buy little against a stolen registry while making every first call and every
 * wrong password (which cannot be cached without telling names apart) tie up the 4-thread pool
 * longer; a cheaper one would make an offline guess of a leaked hash too cheap.
 */
export const SCRYPT_LOG2_N = 14;
export const SCRYPT_BLOCK_SIZE = 8;
export const SCRYPT_PARALLELISM = 1;
export const SALT_BYTES = 16;
export const HASH_BYTES = 32;

/**
 * Bounds on what a stored hash may ask for: a hand-edited or hostile registry entry must not
 * make a verification allocate gigabytes or spin for minutes (2^20 · 8 · 128 B = 1 GiB at most).
 */
const MAX_LOG2_N = 20;
const MAX_BLOCK_SIZE = 32;
const MAX_PARALLELISM = 16;
const MIN_HASH_BYTES = 16;
const MAX_HASH_BYTES = 64;
const MAX_SALT_BYTES = 64;

export const MIN_PASSWORD_LENGTH = 8;
export const MAX_PASSWORD_LENGTH = 1024;

const BASE64 = /^[A-Za-z0-9+/]+={0,2}$/;
const DECIMAL = /^[0-9]{1,2}$/;

/** The parameters and bytes of one stored hash. */
export interface PasswordHash {
  log2N: number;
  blockSize: number;
  parallelism: number;
  salt: Buffer;
  hash: Buffer;
}

/** Hashes a password for the registry with a fresh random salt. */
export async function hashPassword(password: string): Promise<string> {
  const salt = randomBytes(SALT_BYTES);
  const hash = await deriveKey(password, salt, HASH_BYTES, SCRYPT_LOG2_N, SCRYPT_BLOCK_SIZE, SCRYPT_PARALLELISM);
  return [SCHEME, SCRYPT_LOG2_N, SCRYPT_BLOCK_SIZE, SCRYPT_PARALLELISM, salt.toString("base64"), hash.toString("base64")].join("$");
}

/**
 * Whether `password` is the one `encoded` was made from. A malformed or out-of-bounds encoding
 * is a mismatch, never an exception: the caller answers "wrong password" either way.
 */
export async function verifyPassword(password: string, encoded: string): Promise<boolean> {
  const parsed = parsePasswordHash(encoded);
  if (parsed === undefined) return false;
  let derived: Buffer;
  try {
    derived = await deriveKey(password, parsed.salt, parsed.hash.length, parsed.log2N, parsed.blockSize, parsed.parallelism);
  } catch {
    return false;
  }
  return timingSafeEqual(derived, parsed.hash);
}

/** Decodes a stored hash; `undefined` when it is not one this build can verify. */
export function parsePasswordHash(encoded: unknown): PasswordHash | undefined {
  if (typeof encoded !== "string") return undefined;
  const parts = encoded.split("$");
  if (parts.length !== 6 || parts[0] !== SCHEME) return undefined;
  const [, log2NText, blockSizeText, parallelismText, saltText, hashText] = parts as [string, string, string, string, string, string];
  if (!DECIMAL.test(log2NText) || !DECIMAL.test(blockSizeText) || !DECIMAL.test(parallelismText)) return undefined;
  const log2N = Number(log2NText);
  const blockSize = Number(blockSizeText);
  const parallelism = Number(parallelismText);
  if (log2N < 1 || log2N > MAX_LOG2_N) return undefined;
  if (blockSize < 1 || blockSize > MAX_BLOCK_SIZE || parallelism < 1 || parallelism > MAX_PARALLELISM) return undefined;
  if (!BASE64.test(saltText) || !BASE64.test(hashText)) return undefined;
  const salt = Buffer.from(saltText, "base64");
  const hash = Buffer.from(hashText, "base64");
  if (salt.length === 0 || salt.length > MAX_SALT_BYTES) return undefined;
  if (hash.length < MIN_HASH_BYTES || hash.length > MAX_HASH_BYTES) return undefined;
  return { log2N, blockSize, parallelism, salt, hash };
}

export function isPasswordHash(encoded: unknown): encoded is string {
  return parsePasswordHash(encoded) !== undefined;
}

/**
 * Reads a password from the first line of a file (`--admin-password-file`, `--password-file`),
 * so it never appears in a process list or shell history. Errors name the file, never its content.
 */
export function readPasswordFile(path: string): string {
  let text: string;
  try {
    text = readFileSync(path, "utf8");
  } catch (err) {
    const reason = (err as NodeJS.ErrnoException).code ?? "unreadable";
    throw new InvalidConfigError(`cannot read the password file ${path} (${reason}); give a readable file whose first line is the password`);
  }
  const newline = text.search(/[\r\n]/);
  const password = newline === -1 ? text : text.slice(0, newline);
  if (password.length === 0) {
    throw new InvalidConfigError(`the password file ${path} has an empty first line; write the password on its first line`);
  }
  return password;
}

/** Checks a new user's password; the message never repeats it. Returns the password. */
export function validatePassword(password: unknown): string {
  if (typeof password !== "string") throw new InvalidArgumentError("a password must be a string");
  if (password.length < MIN_PASSWORD_LENGTH || password.length > MAX_PASSWORD_LENGTH) {
    throw new InvalidArgumentError(
      `a password must have ${MIN_PASSWORD_LENGTH} to ${MAX_PASSWORD_LENGTH} characters; the one given has ${password.length}`,
    );
  }
  return password;
}

function deriveKey(password: string, salt: Buffer, keyBytes: number, log2N: number, blockSize: number, parallelism: number): Promise<Buffer> {
  const N = 2 ** log2N;
  const options: ScryptOptions = {
    N,
    r: blockSize,
    p: parallelism,
    // OpenSSL refuses when 128 · N · r passes maxmem (Node's default, 32 MiB, leaves no room
    // for raised parameters); twice the need keeps headroom for its own bookkeeping.
    maxmem: 2 * 128 * N * blockSize + 1024 * 1024,
  };
  return new Promise((resolve, reject) => {
    scrypt(password, salt, keyBytes, options, (err, key) => (err ? reject(err) : resolve(key)));
  });
}
