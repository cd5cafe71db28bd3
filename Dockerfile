# The application image of the compose stack: the `migrate` service (scripts/migrate.sh: the dbmate
# migrations, then the definitions) and the `worker` service (alert delivery and the change stream).
# The database image is db/Dockerfile.
FROM node:20-bookworm-slim
WORKDIR /app
# Dependencies first, so that a change of the code reuses this layer. dbmate and tsx are
# devDependencies: the migrations and the worker need them.
COPY package.json package-lock.json ./
RUN npm ci --no-audit --no-fund && npm cache clean --force
COPY tsconfig.json ./
COPY db ./db
COPY scripts ./scripts
COPY sdk ./sdk
USER node
CMD ["node_modules/.bin/tsx", "scripts/worker.ts"]
