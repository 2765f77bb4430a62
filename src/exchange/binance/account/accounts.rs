//! The accounts one process trades, and which strategy trades on which.
//!
//! Binance counts unfilled orders per account and request weight per IP, so each account has
//! order pools of its own (`Scope::Account(n)`, n = the account's index) while the weight pools
//! stay the egress group's: more accounts multiply order capacity, not request weight. Account 0
//! is the first configured (or the single account of the existing flags and variables).

use std::collections::HashMap;

use crate::ledger::Scope;

/// One `[accounts.NAME]` entry: its name and the environment variables holding its key and what
/// signs with it (an HMAC secret, or the path of an Ed25519 private key file: exactly one).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct AccountSpec {
    pub name: String,
    /// The variable holding the API key; `None` for the single account of the existing variables.
    pub key_env: Option<String>,
    /// The variable holding the HMAC secret.
    pub secret_env: Option<String>,
    /// The variable holding the path of the Ed25519 private key (PKCS#8 PEM).
    pub private_key_file_env: Option<String>,
}

/// Which variables an account's credentials are read from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AccountVars<'a> {
    Hmac { key_env: &'a str, secret_env: &'a str },
    Ed25519 { key_env: &'a str, key_file_env: &'a str },
}

impl AccountSpec {
    /// The variables of a configured account (`None` for the single account of no `[accounts]`,
    /// which reads the profile's usual variables). [`Accounts::new`] checks exactly one signer is named.
    pub fn vars(&self) -> Option<AccountVars<'_>> {
        let key_env = self.key_env.as_deref()?;
        match (self.secret_env.as_deref(), self.private_key_file_env.as_deref()) {
            (Some(secret_env), None) => Some(AccountVars::Hmac { key_env, secret_env }),
            (None, Some(key_file_env)) => Some(AccountVars::Ed25519 { key_env, key_file_env }),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AccountsError {
    #[error("accounts: an account needs a name")]
    NoName,
    #[error(
        "accounts: the name {0:?} may hold only letters, digits, '-' and '_' (it names the account's journal folder)"
    )]
    BadName(String),
    #[error("accounts: the name {0:?} is given twice")]
    DuplicateName(String),
    #[error(
        "accounts: {account} needs key_env (the environment variable holding its API key) and either secret_env (its \
         HMAC secret) or private_key_file_env (the path of its Ed25519 private key file)"
    )]
    MissingVars { account: String },
    #[error(
        "accounts: {account} gives both secret_env and private_key_file_env: its API key is either an HMAC key or an \
         Ed25519 key; keep one"
    )]
    TwoSigners { account: String },
    #[error("accounts: {first} and {second} both read their key from {var}: each account needs its own key")]
    SharedKey { first: String, second: String, var: String },
    #[error("accounts: at most {} accounts", u16::MAX)]
    TooMany,
    #[error("strategy {strategy} names the account {account:?}, which is not configured (known: {known})")]
    UnknownAccount {
        strategy: String,
        account: String,
        known: String,
    },
}

/// The configured accounts and each strategy's account.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Accounts {
    accounts: Vec<AccountSpec>,
    /// Whether `[accounts]` was configured (else the single account of the existing flags).
    configured: bool,
    by_strategy: HashMap<String, u16>,
}

impl Default for Accounts {
    /// The single account of the existing flags and environment variables.
    fn default() -> Self {
        Accounts {
            accounts: vec![AccountSpec {
                name: "default".into(),
                ..AccountSpec::default()
            }],
            configured: false,
            by_strategy: HashMap::new(),
        }
    }
}

impl Accounts {
    /// `accounts` in order (the first is the default), and `(strategy, account name)` choices.
    pub fn new(accounts: Vec<AccountSpec>, choices: &[(String, String)]) -> Result<Accounts, AccountsError> {
        if accounts.is_empty() {
            return Accounts::default().with_choices(choices);
        }
        if accounts.len() > usize::from(u16::MAX) {
            return Err(AccountsError::TooMany);
        }
        for (i, account) in accounts.iter().enumerate() {
            if account.name.trim().is_empty() {
                return Err(AccountsError::NoName);
            }
            if !account
                .name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
            {
                return Err(AccountsError::BadName(account.name.clone()));
            }
            if account.secret_env.is_some() && account.private_key_file_env.is_some() {
                return Err(AccountsError::TwoSigners {
                    account: account.name.clone(),
                });
            }
            let (Some(key_env), Some(_)) = (&account.key_env, account.vars()) else {
                return Err(AccountsError::MissingVars {
                    account: account.name.clone(),
                });
            };
            for earlier in &accounts[..i] {
                if earlier.name == account.name {
                    return Err(AccountsError::DuplicateName(account.name.clone()));
                }
                if earlier.key_env.as_ref() == Some(key_env) {
                    return Err(AccountsError::SharedKey {
                        first: earlier.name.clone(),
                        second: account.name.clone(),
                        var: key_env.clone(),
                    });
                }
            }
        }
        Accounts {
            accounts,
            configured: true,
            by_strategy: HashMap::new(),
        }
        .with_choices(choices)
    }

    fn with_choices(mut self, choices: &[(String, String)]) -> Result<Accounts, AccountsError> {
        for (strategy, name) in choices {
            let Some(index) = self.accounts.iter().position(|a| &a.name == name) else {
                return Err(AccountsError::UnknownAccount {
                    strategy: strategy.clone(),
                    account: name.clone(),
                    known: if self.configured {
                        self.names().join(", ")
                    } else {
                        "none: add [accounts.NAME] sections".into()
                    },
                });
            };
            // `new` allows at most u16::MAX accounts.
            self.by_strategy.insert(strategy.clone(), index as u16);
        }
        Ok(self)
    }

    pub fn accounts(&self) -> &[AccountSpec] {
        &self.accounts
    }

    /// Whether `[accounts]` sections were given (else one account from the existing flags).
    pub fn configured(&self) -> bool {
        self.configured
    }

    pub fn names(&self) -> Vec<&str> {
        self.accounts.iter().map(|a| a.name.as_str()).collect()
    }

    /// Each configured account's pool scope with its name, for a budget shared by name; none
    /// without `[accounts]` (the one account keeps the ledger's own spelling, `account0`).
    pub fn named_scopes(&self) -> impl Iterator<Item = (Scope, String)> + '_ {
        // `new` allows at most u16::MAX accounts.
        let named = if self.configured { &self.accounts[..] } else { &[] };
        (0u16..).zip(named).map(|(i, a)| (Scope::Account(i), a.name.clone()))
    }

    /// How many accounts (at least one).
    pub fn count(&self) -> u16 {
        self.accounts.len() as u16
    }

    /// The account `strategy` trades on: the one it named, else the first.
    pub fn account_of(&self, strategy: &str) -> u16 {
        self.by_strategy.get(strategy).copied().unwrap_or(0)
    }

    /// The account's name, for a pool counted by `Scope::Account(account)`.
    pub fn name(&self, account: u16) -> Option<&str> {
        self.accounts.get(usize::from(account)).map(|a| a.name.as_str())
    }

    /// The scope name of an account's pools when accounts are configured (`None`: a single
    /// unnamed account, whose pools stay plain `account0`).
    pub fn scope_name(&self, scope: Scope) -> Option<&str> {
        match scope {
            Scope::Account(n) if self.configured => self.name(n),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn account(name: &str) -> AccountSpec {
        AccountSpec {
            name: name.into(),
            key_env: Some(format!("{}_KEY", name.to_uppercase())),
            secret_env: Some(format!("{}_SECRET", name.to_uppercase())),
            private_key_file_env: None,
        }
    }

    #[test]
    fn strategies_trade_on_the_account_they_name_else_the_first() {
        let accounts = Accounts::new(vec![account("main"), account("sub1")], &[("mm".into(), "sub1".into())]).unwrap();
        assert_eq!((accounts.account_of("mm"), accounts.account_of("other")), (1, 0));
        assert_eq!(accounts.scope_name(Scope::Account(1)), Some("sub1"));
        assert_eq!(accounts.scope_name(Scope::Ip(1)), None);
        assert_eq!(Accounts::default().count(), 1);
        assert_eq!(Accounts::default().scope_name(Scope::Account(0)), None);
    }

    #[test]
    fn bad_accounts_are_refused_in_one_line() {
        let err = Accounts::new(vec![account("a")], &[("s".into(), "b".into())]).unwrap_err();
        assert_eq!(
            err.to_string(),
            "strategy s names the account \"b\", which is not configured (known: a)"
        );
        let err = Accounts::new(vec![account("a"), account("a")], &[]).unwrap_err();
        assert_eq!(err.to_string(), "accounts: the name \"a\" is given twice");
        let mut no_secret = account("x");
        no_secret.secret_env = None;
        let err = Accounts::new(vec![no_secret], &[]).unwrap_err();
        assert!(err
            .to_string()
            .starts_with("accounts: x needs key_env (the environment variable holding its API key) and either"));
        let mut same = account("y");
        same.key_env = Some("A_KEY".into());
        let err = Accounts::new(vec![account("a"), same], &[]).unwrap_err();
        assert_eq!(
            err.to_string(),
            "accounts: a and y both read their key from A_KEY: each account needs its own key"
        );
        let err = Accounts::new(vec![account("../up")], &[]).unwrap_err();
        assert!(matches!(err, AccountsError::BadName(_)), "{err}");
        let err = Accounts::new(vec![], &[("s".into(), "b".into())]).unwrap_err();
        assert!(err.to_string().contains("add [accounts.NAME] sections"), "{err}");
    }

    #[test]
    fn an_account_signs_with_an_hmac_secret_or_an_ed25519_key_file_never_both_nor_neither() {
        let ed = AccountSpec {
            secret_env: None,
            private_key_file_env: Some("ED_KEY_FILE".into()),
            ..account("ed")
        };
        let accounts = Accounts::new(vec![account("main"), ed.clone()], &[]).unwrap();
        assert_eq!(
            accounts.accounts()[1].vars(),
            Some(AccountVars::Ed25519 {
                key_env: "ED_KEY",
                key_file_env: "ED_KEY_FILE"
            })
        );
        assert_eq!(
            accounts.accounts()[0].vars(),
            Some(AccountVars::Hmac {
                key_env: "MAIN_KEY",
                secret_env: "MAIN_SECRET"
            })
        );
        let both = AccountSpec {
            secret_env: Some("ED_SECRET".into()),
            ..ed.clone()
        };
        let err = Accounts::new(vec![both], &[]).unwrap_err();
        assert_eq!(
            err.to_string(),
            "accounts: ed gives both secret_env and private_key_file_env: its API key is either an HMAC key or an \
             Ed25519 key; keep one"
        );
        let no_key = AccountSpec { key_env: None, ..ed };
        let err = Accounts::new(vec![no_key], &[]).unwrap_err();
        assert!(matches!(err, AccountsError::MissingVars { .. }), "{err}");
        assert_eq!(Accounts::default().accounts()[0].vars(), None);
    }
}
