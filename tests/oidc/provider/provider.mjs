// A real OpenID provider for Elysium's single sign-on tests: panva's oidc-provider on loopback.
//
//   node provider.mjs CONFIG.json
//
// CONFIG holds {port, issuer, jwks, clients, users}: the signing keys (the tests make them, so
// they can also sign tokens that must be refused for their claims alone), the clients (the
// dashboard's code + PKCE client, the command line's device-flow client) and static users
// ({login: {email, email_verified, name, groups}}). Sign-in is oidc-provider's own development
// login page (any password); consent is granted without a page, as for a first-party app.
// It prints "listening <issuer>" once it answers.
import { readFileSync } from 'node:fs';

import Provider from 'oidc-provider';

const config = JSON.parse(readFileSync(process.argv[2], 'utf8'));
const SCOPES = ['openid', 'email', 'profile', 'groups'];

function plainPage(ctx, title, body) {
  ctx.type = 'html';
  ctx.body = `<!DOCTYPE html><html><head><meta charset="utf-8"><title>${title}</title></head>`
    + `<body><h1>${title}</h1>${body}</body></html>`;
}

const provider = new Provider(config.issuer, {
  clients: config.clients,
  jwks: config.jwks,
  cookies: { keys: [config.cookie_key] },
  scopes: SCOPES,
  claims: {
    openid: ['sub'],
    email: ['email', 'email_verified'],
    profile: ['name', 'preferred_username'],
    groups: ['groups'],
  },
  // The ID token carries the user's claims in the code and device flows too: Elysium reads
  // them from the verified ID token, never from an unsigned answer.
  conformIdTokenClaims: false,
  features: {
    devInteractions: { enabled: true },
    deviceFlow: {
      enabled: true,
      // Plain pages: the stock ones load a web font from outside this machine.
      userCodeInputSource(ctx, form, out, err) {
        const msg = err ? '<p id="error">The code is not valid.</p>' : '<p>Enter the code shown on your device.</p>';
        plainPage(ctx, 'Device sign-in', `${msg}${form}<button type="submit" id="continue" form="op.deviceInputForm">Continue</button>`);
      },
      userCodeConfirmSource(ctx, form, client, deviceInfo, userCode) {
        plainPage(ctx, 'Confirm device', `<p>Code <code id="user-code">${userCode}</code></p>${form}`
          + '<button type="submit" id="confirm" form="op.deviceConfirmForm">Continue</button>');
      },
      successSource(ctx) {
        plainPage(ctx, 'Signed in', '<p id="done">You may close this window.</p>');
      },
    },
    rpInitiatedLogout: { enabled: false },
  },
  async findAccount(ctx, sub) {
    const user = config.users[sub];
    if (!user) return undefined;
    return {
      accountId: sub,
      async claims() {
        return { sub, preferred_username: sub, ...user };
      },
    };
  },
  async loadExistingGrant(ctx) {
    const grantId = ctx.oidc.result?.consent?.grantId
      || ctx.oidc.session.grantIdFor(ctx.oidc.client.clientId);
    if (grantId) return ctx.oidc.provider.Grant.find(grantId);
    // First-party clients: consent is implied, so no consent page is shown.
    const grant = new ctx.oidc.provider.Grant({
      clientId: ctx.oidc.client.clientId,
      accountId: ctx.oidc.session.accountId,
    });
    grant.addOIDCScope(SCOPES.join(' '));
    await grant.save();
    return grant;
  },
  ttl: { IdToken: 300, AccessToken: 300, DeviceCode: 120, Interaction: 300, Session: 600, Grant: 600 },
});

// Nothing from outside this machine, whatever a page asks for (the dev login page imports a
// web font): styles inline only, no fonts, images or scripts from elsewhere.
provider.use(async (ctx, next) => {
  await next();
  if (ctx.type === 'text/html') {
    ctx.set('Content-Security-Policy', "default-src 'none'; style-src 'unsafe-inline'");
  }
});

const server = provider.listen(config.port, '127.0.0.1', () => {
  process.stdout.write(`listening ${config.issuer}\n`);
});
process.on('SIGTERM', () => server.close(() => process.exit(0)));
