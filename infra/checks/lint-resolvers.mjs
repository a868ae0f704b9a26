// Lints infra/resolvers/*.js with AWS's own rules for the APPSYNC_JS runtime
// (@aws-appsync/eslint-plugin, config `recommended`: no try/catch, no regex
// literals, no classic for/while loops, no unsupported methods, ...):
// https://docs.aws.amazon.com/appsync/latest/devguide/resolver-reference-overview-js.html
// Some rules need type information, so a tsconfig for the resolvers is written
// next to the tools.
//
// Usage: node lint-resolvers.mjs <dir with node_modules> <repo root>

import { writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { join } from 'node:path';

const [nodeDir, repo] = process.argv.slice(2);
const require = createRequire(join(nodeDir, 'package.json'));
const { ESLint } = require('eslint');
const appsync = require('@aws-appsync/eslint-plugin');

const tsconfig = join(nodeDir, 'tsconfig.resolvers.json');
writeFileSync(
  tsconfig,
  JSON.stringify(
    {
      compilerOptions: {
        allowJs: true,
        noEmit: true,
        target: 'es2020',
        module: 'es2020',
        moduleResolution: 'node',
        baseUrl: nodeDir,
        paths: { '@aws-appsync/utils': ['node_modules/@aws-appsync/utils'] },
        types: [],
      },
      include: [join(repo, 'infra/resolvers/*.js')],
    },
    null,
    2,
  ),
);

const eslint = new ESLint({
  cwd: repo,
  overrideConfigFile: true,
  overrideConfig: [
    {
      files: ['infra/resolvers/*.js'],
      ...appsync.configs.recommended,
      languageOptions: {
        ...appsync.configs.recommended.languageOptions,
        sourceType: 'module',
        parserOptions: { project: tsconfig, tsconfigRootDir: repo },
      },
      linterOptions: { reportUnusedDisableDirectives: 'error', noInlineConfig: true },
    },
  ],
});

const results = await eslint.lintFiles(['infra/resolvers/*.js']);
const formatter = await eslint.loadFormatter('stylish');
const output = formatter.format(results);
const errors = results.reduce((n, r) => n + r.errorCount + r.warningCount + r.fatalErrorCount, 0);
if (errors > 0 || results.length === 0) {
  console.error(output || 'no resolver files found');
  process.exit(1);
}
console.log(`infra/resolvers: ${results.length} files pass @aws-appsync/eslint-plugin (recommended)`);
