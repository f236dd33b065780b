// The AWS SDK for JavaScript v3 as the client of the bridge's IAM Identity Center protocol: its own
// fromSSO provider reads ~/.aws/config (an sso-session profile, AWS_PROFILE) and the token cache that
// botocore wrote, with the endpoints overridden (AWS_ENDPOINT_URL_SSO / AWS_ENDPOINT_URL_SSO_OIDC);
// then STS GetCallerIdentity at STS_URL. Also checks two errors through the SDK's exception classes.
// Prints one JSON line: {"arn", "forbidden", "unauthorized"}.
import { readFileSync } from "node:fs";
import { createHash } from "node:crypto";
import { homedir } from "node:os";
import { join } from "node:path";
import { fromSSO } from "@aws-sdk/credential-providers";
import { STSClient, GetCallerIdentityCommand } from "@aws-sdk/client-sts";
import { SSOClient, GetRoleCredentialsCommand, ListAccountsCommand } from "@aws-sdk/client-sso";

const sts = new STSClient({ region: "us-east-1", endpoint: process.env.STS_URL, credentials: fromSSO({ profile: "dev" }) });
const who = await sts.send(new GetCallerIdentityCommand({}));

const cache = JSON.parse(readFileSync(join(homedir(), ".aws", "sso", "cache",
  createHash("sha1").update("bridge").digest("hex") + ".json"), "utf8"));
const sso = new SSOClient({ region: "us-east-1", endpoint: process.env.AWS_ENDPOINT_URL_SSO });
let forbidden = "";
try {
  await sso.send(new GetRoleCredentialsCommand({ accessToken: cache.accessToken, accountId: "123456789012",
                                                 roleName: "NotGranted" }));
} catch (e) { forbidden = e.name; }
let unauthorized = "";
try {
  await sso.send(new ListAccountsCommand({ accessToken: "made-up" }));
} catch (e) { unauthorized = e.name; }
console.log(JSON.stringify({ arn: who.Arn, forbidden, unauthorized }));
