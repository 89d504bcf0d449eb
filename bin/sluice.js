#!/usr/bin/env node
// The `sluice` command. The CLI is compiled by `npm install` (the prepare script).
import "../dist/cli/src/main.js";
