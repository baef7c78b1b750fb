import { fileURLToPath, URL } from 'node:url'
import { defineConfig } from 'vite'
import vue from '@vitejs/plugin-vue'

// The Go server serves web/dist at "/". In development, `npm run dev` proxies
// the API and the SSE feeds (per room and multiplexed) to a roomfeed server on 127.0.0.1:8080.
export default defineConfig({
  base: '/',
  plugins: [vue()],
  resolve: {
    alias: { '@': fileURLToPath(new URL('./src', import.meta.url)) },
  },
  build: {
    outDir: 'dist',
    emptyOutDir: true,
  },
  server: {
    proxy: {
      '/rooms': { target: 'http://127.0.0.1:8080', changeOrigin: false },
      '/events': { target: 'http://127.0.0.1:8080', changeOrigin: false },
    },
  },
  test: {
    include: ['src/**/*.test.js', 'packages/*/src/**/*.test.js'],
    environment: 'node',
    testTimeout: 10000,
  },
})
