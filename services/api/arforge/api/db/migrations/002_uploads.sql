-- Uploaded content: bytes live in the object store under `key`; `kind` is sniffed.
CREATE TABLE uploads (
    id            uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    tenant_id     uuid NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
    key           text NOT NULL UNIQUE,
    kind          text NOT NULL,                  -- video, image, images_zip, glb, gltf, usdz
    content_type  text NOT NULL,
    size          bigint NOT NULL CHECK (size >= 0),
    filename      text,
    sha256        text,
    created_at    timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX uploads_tenant_created ON uploads (tenant_id, created_at DESC, id DESC);
