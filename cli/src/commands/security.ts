/**
 * `sluice user add | list | delete` and `sluice acl add | list | delete`: users and ACLs kept
 * by the name servers and enforced by every broker once `--auth` is on. A password is read
 * from a file (never a flag, never printed); input is checked before connecting.
 *
 * `user add --json`:    {"user", "superuser", "created"}     (created false: replaced)
 * `user list --json`:   {"users": [{"name", "superuser", "builtIn"}]}
 * `user delete --json`: {"user", "deleted": true}
 * `acl add --json`:     {"acl": {...entry, "resource"}, "created"}   (created false: it existed)
 * `acl list --json`:    {"acls": [{"principal", "operation", "resourceType", "resourceName", "patternType", "permission", "resource"}]}
 * `acl delete --json`:  {"acl": {...entry, "resource"}, "deleted": true}
 */
import type { Command } from "commander";
import { toAclEntry, type AclInput, type AclListing } from "../../../clients/src/admin/security.js";
import { describeAcl, formatResource, validateUserName } from "../../../common/src/security/acl.js";
import { readPasswordFile } from "../../../common/src/security/password.js";
import { OPERATIONS } from "../../../common/src/security/types.js";
import { withClient } from "../client.js";
import { action, emit, table, type GlobalOptions } from "../output.js";

const RESOURCE_HELP = "topic:NAME, topic:PREFIX* (e.g. topic:orders.*), topic:*, group:NAME, group:PREFIX*, or cluster";

interface AclFlags {
  principal: string;
  operation: string;
  resource: string;
  deny?: boolean;
}

export function securityCommands(program: Command, globals: () => GlobalOptions): void {
  userCommands(program, globals);
  aclCommands(program, globals);
}

function userCommands(program: Command, globals: () => GlobalOptions): void {
  const user = program.command("user").description("password users (admin is built in: its password comes from --admin-password-file)");

  user
    .command("add <name>")
    .description("add a password user; with --replace, change an existing user's password and superuser flag")
    // Same name as the global caller flag: after `add` it is the new user's (global-flags.ts);
    // the caller's comes before `user` (`sluice --user admin --password-file admin.pw user add …`)
    // or from SLUICE_PASSWORD_FILE.
    .requiredOption(
      "--password-file <file>",
      "file whose first line is the NEW user's password (8 to 1024 characters); your own goes before `user` or in SLUICE_PASSWORD_FILE",
    )
    .option("--superuser", "the user skips every ACL check", false)
    .option("--replace", "replace the user if it exists (a password change)", false)
    .action(
      action(async (name: string, flags: { passwordFile: string; superuser: boolean; replace: boolean }) => {
        const g = globals();
        validateUserName(name);
        const password = readPasswordFile(flags.passwordFile);
        const change = await withClient(g, (sluice) =>
          sluice.admin().createUser(name, password, { superuser: flags.superuser, replace: flags.replace }),
        );
        const kind = flags.superuser ? "superuser" : "user";
        emit(g.json, { user: change.name, superuser: flags.superuser, created: change.created }, () =>
          `${change.created ? "created" : "replaced"} ${kind} ${change.name}\n`,
        );
      }),
    );

  user
    .command("list")
    .description("every user with its flags (never a password)")
    .action(
      action(async () => {
        const g = globals();
        const users = await withClient(g, (sluice) => sluice.admin().listUsers());
        emit(g.json, { users }, () =>
          table(
            ["USER", "SUPERUSER", "BUILT-IN"],
            users.map((u) => [u.name, u.superuser ? "yes" : "no", u.builtIn ? "yes" : "no"]),
          ),
        );
      }),
    );

  user
    .command("delete <name>")
    .description("delete a user; its ACL entries stay (as in Kafka): remove them with `sluice acl delete`")
    .action(
      action(async (name: string) => {
        const g = globals();
        validateUserName(name);
        await withClient(g, (sluice) => sluice.admin().deleteUser(name));
        emit(g.json, { user: name, deleted: true }, () =>
          `deleted user ${name}; its ACL entries stay (sluice acl list --principal User:${name})\n`,
        );
      }),
    );
}

function aclCommands(program: Command, globals: () => GlobalOptions): void {
  const acl = program.command("acl").description("who may do what on which topics, groups and the cluster (enforced with --auth)");

  const entryFlags = (command: Command): Command =>
    command
      .requiredOption("--principal <principal>", "User:NAME, or User:* for every authenticated principal")
      .requiredOption("--operation <operation>", OPERATIONS.join(", "))
      .requiredOption("--resource <resource>", RESOURCE_HELP)
      .option("--deny", "a deny entry (beats any allow) instead of an allow entry", false);

  entryFlags(acl.command("add").description("allow (or with --deny, deny) an operation on a resource to a principal")).action(
    action(async (flags: AclFlags) => {
      const g = globals();
      // Checked before connecting: a bad entry fails without a cluster.
      const input = aclInput(flags);
      const change = await withClient(g, (sluice) => sluice.admin().createAcl(input));
      emit(g.json, change, () => `${change.created ? "added" : "exists already:"} ${describeAcl(change.acl)}\n`);
    }),
  );

  acl
    .command("list")
    .description("every ACL entry, or those of one principal")
    .option("--principal <principal>", "only the entries naming exactly this principal (User:NAME or User:*)")
    .action(
      action(async (flags: { principal?: string }) => {
        const g = globals();
        const acls = await withClient(g, (sluice) =>
          sluice.admin().listAcls(flags.principal === undefined ? {} : { principal: flags.principal }),
        );
        emit(g.json, { acls }, () => renderAcls(acls));
      }),
    );

  entryFlags(acl.command("delete").description("delete the entry with exactly these fields (--deny for a deny entry)")).action(
    action(async (flags: AclFlags) => {
      const g = globals();
      const input = aclInput(flags);
      const entry = toAclEntry(input);
      await withClient(g, (sluice) => sluice.admin().deleteAcl(input));
      emit(g.json, { acl: { ...entry, resource: formatResource(entry) }, deleted: true }, () => `deleted ${describeAcl(entry)}\n`);
    }),
  );
}

/** The entry the flags describe, checked (toAclEntry throws naming what is wrong). */
function aclInput(flags: AclFlags): AclInput {
  const input: AclInput = {
    principal: flags.principal,
    operation: flags.operation,
    resource: flags.resource,
    permission: flags.deny ? "deny" : "allow",
  };
  toAclEntry(input);
  return input;
}

export function renderAcls(acls: AclListing[]): string {
  if (acls.length === 0) return "no ACL entries\n";
  return table(
    ["PERMISSION", "PRINCIPAL", "OPERATION", "RESOURCE"],
    acls.map((e) => [e.permission.toUpperCase(), e.principal, e.operation, e.resource]),
  );
}
