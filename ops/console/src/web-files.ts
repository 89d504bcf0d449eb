/**
 * The console's static files (ops/console/web/), served at /console. There is no build
 * step: the files are served as written. Only the files listed below are served, so no
 * path a browser sends can reach anything else on disk.
 *
 * Every answer carries a Content-Security-Policy that allows this origin only: no inline
 * script, no third-party script or style, no frames. The console renders data with
 * textContent and DOM nodes only, and the policy holds it to that.
 */
import { existsSync, readFileSync } from "node:fs";
import { readFile } from "node:fs/promises";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import type { FastifyInstance, FastifyReply } from "fastify";

/** The package whose root holds ops/console/web (the checkout, or node_modules/sluice). */
export const PACKAGE_NAME = "sluice";
export const WEB_FOLDER = join("ops", "console", "web");

/**
 * file → content type. A Map, not an object literal: "/console/constructor" or
 * "/console/__proto__" must find nothing, not a property every object inherits.
 */
const FILES: ReadonlyMap<string, string> = new Map([
  ["index.html", "text/html; charset=utf-8"],
  ["console.js", "text/javascript; charset=utf-8"],
  ["console.css", "text/css; charset=utf-8"],
]);

export const CONTENT_SECURITY_POLICY = [
  "default-src 'none'",
  "script-src 'self'",
  "style-src 'self'",
  "connect-src 'self'",
  // The page's icon is an empty data: URL, so browsers do not ask for /favicon.ico.
  "img-src 'self' data:",
  "base-uri 'none'",
  "form-action 'none'",
  "frame-ancestors 'none'",
].join("; ");

/**
 * The package root: the nearest folder above `fromUrl` with a package.json named "sluice".
 * Works from the TypeScript sources (tsx) and from the compiled dist/ alike.
 */
export function findPackageRoot(fromUrl: string): string {
  let folder = dirname(fileURLToPath(fromUrl));
  for (;;) {
    const manifest = join(folder, "package.json");
    if (existsSync(manifest)) {
      try {
        if ((JSON.parse(readFileSync(manifest, "utf8")) as { name?: unknown }).name === PACKAGE_NAME) return folder;
      } catch {
        // An unreadable package.json on the way up is not ours: keep climbing.
      }
    }
    const parent = dirname(folder);
    if (parent === folder) throw new Error(`no package.json named "${PACKAGE_NAME}" above ${fileURLToPath(fromUrl)}`);
    folder = parent;
  }
}

export function registerConsoleFiles(app: FastifyInstance, webFolder: string): void {
  const hidden = { schema: { hide: true } };
  const send = async (reply: FastifyReply, name: string): Promise<FastifyReply> => {
    const type = FILES.get(name);
    if (type === undefined) {
      return reply.code(404).send({ code: "NOT_FOUND", message: `the console has no file "${name}"`, retriable: false });
    }
    // Read on every request: small files, and an edited console shows on reload.
    const body = await readFile(join(webFolder, name));
    return reply
      .header("content-type", type)
      .header("cache-control", "no-cache")
      .header("x-content-type-options", "nosniff")
      .header("content-security-policy", CONTENT_SECURITY_POLICY)
      .send(body);
  };
  app.get("/console", hidden, (_request, reply) => send(reply, "index.html"));
  app.get("/console/", hidden, (_request, reply) => send(reply, "index.html"));
  app.get<{ Params: { file: string } }>("/console/:file", hidden, (request, reply) => send(reply, request.params.file));
}
