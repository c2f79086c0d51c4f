//! Opaque secrets a client holds and the tenant's database knows only by hash: refresh
//! tokens and events tickets. Each names its tenant in the clear (a refresh has no access
//! token to say which tenant it is for), then 32 random bytes: `<kind>_<tenant>_<random>`.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use rand::RngCore;
use sha2::{Digest, Sha256};
use tenancy_core::TenantId;
use uuid::Uuid;

/// What a secret is for; its prefix.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Refresh,
    EventsTicket,
}

impl Kind {
    fn prefix(self) -> &'static str {
        match self {
            Self::Refresh => "rt",
            Self::EventsTicket => "et",
        }
    }
}

/// A secret as presented: its tenant, and the hash the database stores.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Presented {
    pub tenant: TenantId,
    pub hash: [u8; 32],
}

/// A new secret for `tenant`: the text to hand out, and its hash to store.
pub fn mint(kind: Kind, tenant: TenantId) -> (String, [u8; 32]) {
    let mut random = [0_u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut random);
    let text = format!(
        "{}_{}_{}",
        kind.prefix(),
        tenant.as_uuid().simple(),
        URL_SAFE_NO_PAD.encode(random)
    );
    let hash = digest(&text);
    (text, hash)
}

/// The tenant and hash of a presented secret of `kind`; `None` when it is not one.
pub fn parse(kind: Kind, text: &str) -> Option<Presented> {
    let mut parts = text.splitn(3, '_');
    if parts.next()? != kind.prefix() {
        return None;
    }
    let tenant = Uuid::try_parse(parts.next()?).ok()?;
    let random = URL_SAFE_NO_PAD.decode(parts.next()?).ok()?;
    if random.len() != 32 {
        return None;
    }
    Some(Presented {
        tenant: TenantId::from_uuid(tenant),
        hash: digest(text),
    })
}

fn digest(text: &str) -> [u8; 32] {
    Sha256::digest(text.as_bytes()).into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_secret_names_its_tenant_and_hashes_the_same_way() {
        let tenant = TenantId::from_uuid(Uuid::new_v4());
        let (text, hash) = mint(Kind::Refresh, tenant);
        let presented = parse(Kind::Refresh, &text).expect("parses");
        assert_eq!(presented.tenant, tenant);
        assert_eq!(presented.hash, hash);
        assert_eq!(
            parse(Kind::EventsTicket, &text),
            None,
            "the kind is checked"
        );
        let (other, _) = mint(Kind::Refresh, tenant);
        assert_ne!(text, other);
    }

    #[test]
    fn anything_else_is_refused() {
        for text in [
            "",
            "rt",
            "rt__",
            "rt_x_y",
            "rt_00000000000000000000000000000000_short",
        ] {
            assert_eq!(parse(Kind::Refresh, text), None, "{text}");
        }
    }
}
