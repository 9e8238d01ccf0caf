/** A throw-away self-signed certificate for 127.0.0.1, ::1 and localhost, made with `openssl`. */

/** A certificate and its key, in PEM. */
export interface TestCert {
  /** The certificate (also the CA to trust). */
  cert: string;
  /** The private key. */
  key: string;
}

/** Whether the `openssl` command is available. */
export async function hasOpenssl(): Promise<boolean> {
  try {
    const { success } = await new Deno.Command("openssl", {
      args: ["version"],
      stdout: "null",
      stderr: "null",
    })
      .output();
    return success;
  } catch {
    return false;
  }
}

/** Generates an ECDSA P-256 certificate valid for a day. */
export async function selfSignedCert(): Promise<TestCert> {
  const { success, stdout, stderr } = await new Deno.Command("openssl", {
    args: [
      "req",
      "-x509",
      "-newkey",
      "ec",
      "-pkeyopt",
      "ec_paramgen_curve:prime256v1",
      "-nodes",
      "-keyout",
      "/dev/stdout",
      "-out",
      "/dev/stdout",
      "-subj",
      "/CN=localhost",
      "-addext",
      "subjectAltName=IP:127.0.0.1,IP:::1,DNS:localhost",
      "-addext",
      "basicConstraints=critical,CA:FALSE", // rustls refuses a CA certificate as end entity
      "-days",
      "1",
    ],
    stdout: "piped",
    stderr: "piped",
  }).output();
  const text = new TextDecoder().decode(stdout);
  if (!success) throw new Error(`openssl failed: ${new TextDecoder().decode(stderr)}`);
  const key = /-----BEGIN PRIVATE KEY-----[\s\S]+?-----END PRIVATE KEY-----\n/.exec(text)?.[0];
  const cert = /-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----\n/.exec(text)?.[0];
  if (key === undefined || cert === undefined) {
    throw new Error(`unexpected openssl output: ${text}`);
  }
  return { cert, key };
}
