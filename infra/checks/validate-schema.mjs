// Validates ../../schema.graphql as AppSync will see it: the stock GraphQL
// validator (graphql-js `buildSchema`) over infra/appsync-prelude.graphql plus
// the schema, then the AppSync rules a generic validator does not know:
//
// - every @aws_subscribe mutation exists and returns the subscription's type;
// - every subscription argument names a scalar field of that type, of the same
//   type (arguments filter on the mutation's result:
//   https://docs.aws.amazon.com/appsync/latest/devguide/aws-appsync-real-time-data.html);
// - the payload type, and every object type inside it, admits every auth mode
//   that publishes or subscribes, else subscribing succeeds and nothing is
//   ever delivered (https://docs.aws.amazon.com/appsync/latest/devguide/security-authz.html).
//
// Usage: node validate-schema.mjs <dir with node_modules/graphql> <repo root>

import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { join } from 'node:path';

const [nodeDir, repo] = process.argv.slice(2);
const require = createRequire(join(nodeDir, 'package.json'));
const {
  buildSchema,
  getNamedType,
  isObjectType,
  isScalarType,
  isEnumType,
} = require('graphql');

// The API's default mode and its additional one (infra/template.yaml).
const DEFAULT_MODE = 'aws_cognito_user_pools';
const MODES = new Set(['aws_iam', 'aws_cognito_user_pools', 'aws_api_key', 'aws_oidc', 'aws_lambda']);

const prelude = readFileSync(join(repo, 'infra/appsync-prelude.graphql'), 'utf8');
const sdl = readFileSync(join(repo, 'schema.graphql'), 'utf8');
// Throws with every SDL error (unknown types or directives, bad arguments, ...).
const schema = buildSchema(`${prelude}\n${sdl}`);

const problems = [];

/** The auth directives on a type or field node, by name. */
function modesOf(astNode) {
  const found = new Set();
  for (const d of astNode?.directives ?? []) {
    if (MODES.has(d.name.value)) {
      found.add(d.name.value);
    }
  }
  return found;
}

/** The modes that may call a root field: its own directives, else its type's, else the default. */
function fieldModes(type, field) {
  const own = modesOf(field.astNode);
  if (own.size > 0) {
    return own;
  }
  const inherited = modesOf(type.astNode);
  return inherited.size > 0 ? inherited : new Set([DEFAULT_MODE]);
}

/** The modes a type admits: its directives, else only the default mode. */
function typeModes(type) {
  const own = modesOf(type.astNode);
  return own.size > 0 ? own : new Set([DEFAULT_MODE]);
}

/** Every object type reachable from `type` through its fields, `type` included. */
function objectTypesWithin(type, seen = new Map()) {
  if (!isObjectType(type) || seen.has(type.name)) {
    return seen;
  }
  seen.set(type.name, type);
  for (const field of Object.values(type.getFields())) {
    objectTypesWithin(getNamedType(field.type), seen);
  }
  return seen;
}

const mutation = schema.getMutationType();
const subscription = schema.getSubscriptionType();
for (const sub of Object.values(subscription?.getFields() ?? {})) {
  const directive = sub.astNode.directives.find((d) => d.name.value === 'aws_subscribe');
  if (!directive) {
    continue;
  }
  const payload = getNamedType(sub.type);
  const arg = directive.arguments.find((a) => a.name.value === 'mutations');
  const names = arg ? arg.value.values.map((v) => v.value) : [];
  if (names.length === 0) {
    problems.push(`Subscription.${sub.name}: @aws_subscribe names no mutation`);
  }
  const needed = new Set(fieldModes(subscription, sub));
  for (const name of names) {
    const m = mutation?.getFields()[name];
    if (!m) {
      problems.push(`Subscription.${sub.name}: no mutation ${name}`);
      continue;
    }
    if (getNamedType(m.type) !== payload) {
      problems.push(
        `Subscription.${sub.name} returns ${payload.name} but Mutation.${name} returns ${getNamedType(m.type).name}`,
      );
    }
    for (const mode of fieldModes(mutation, m)) {
      needed.add(mode);
    }
  }
  if (isObjectType(payload)) {
    const fields = payload.getFields();
    for (const a of sub.args) {
      const f = fields[a.name];
      const argType = getNamedType(a.type);
      if (!f) {
        problems.push(`Subscription.${sub.name}(${a.name}): ${payload.name} has no field ${a.name}`);
      } else if (
        getNamedType(f.type) !== argType ||
        !(isScalarType(argType) || isEnumType(argType))
      ) {
        problems.push(
          `Subscription.${sub.name}(${a.name}): argument type ${a.type} does not match ${payload.name}.${a.name}: ${f.type}`,
        );
      }
    }
    for (const t of objectTypesWithin(payload).values()) {
      const admitted = typeModes(t);
      for (const mode of needed) {
        if (!admitted.has(mode)) {
          problems.push(
            `${t.name} (in the payload of Subscription.${sub.name}) lacks @${mode}: its ${mode} callers would get nothing`,
          );
        }
      }
    }
  }
}

if (problems.length > 0) {
  for (const p of problems) {
    console.error(`schema.graphql: ${p}`);
  }
  process.exit(1);
}
const roots = [schema.getQueryType(), mutation, subscription].filter(Boolean);
const count = roots.reduce((n, t) => n + Object.keys(t.getFields()).length, 0);
console.log(`schema.graphql: valid AppSync SDL (${count} root fields, graphql-js)`);
