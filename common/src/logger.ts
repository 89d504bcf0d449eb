/**
 * Structured logs (pino), one line per event that matters and never one per message.
 * Servers log JSON to stderr so stdout stays free for what the CLI prints.
 */
import { pino, type Logger } from "pino";

export type { Logger };

export type LogLevel = "fatal" | "error" | "warn" | "info" | "debug" | "trace" | "silent";

export function createLogger(name: string, level: LogLevel = defaultLogLevel()): Logger {
  return pino({ name, level, base: { pid: process.pid } }, pino.destination({ fd: 2, sync: false }));
}

/** SLUICE_LOG_LEVEL wins; otherwise info. */
export function defaultLogLevel(): LogLevel {
  const fromEnv = process.env.SLUICE_LOG_LEVEL;
  const levels: LogLevel[] = ["fatal", "error", "warn", "info", "debug", "trace", "silent"];
  return levels.includes(fromEnv as LogLevel) ? (fromEnv as LogLevel) : "info";
}

/** A logger that drops everything, for unit tests and embedded use. */
export const silentLogger: Logger = pino({ level: "silent" });
