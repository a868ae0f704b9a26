// Build settings of the chat page (AppSync -> **subscriber**): a relative base
// so the built page works from any path, e.g. the devstack's web root.
import { defineConfig } from 'vite';

export default defineConfig({
  base: './',
  build: { target: 'es2022' },
});
