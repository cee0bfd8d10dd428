// The chat page: `npm run dev` serves it on http://localhost:5173 against
// `parley dev` on http://localhost:8080 (`make web` from the repository
// root); `npm run build:page` writes it to dist-page/.
import { defineConfig } from "vite";

export default defineConfig({
  root: "app",
  build: { outDir: "../dist-page", emptyOutDir: true },
  server: { port: 5173, strictPort: true },
});
