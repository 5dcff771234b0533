//! Who is online: the list as last heard, who joined and left since the one before, completing a
//! name with Tab, and whether a side pane (the people pane, the room list) is shown.

/// Who is online, as last heard.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum People {
    /// No list has come yet: the first one is not news.
    #[default]
    Unknown,
    /// The last list, sorted without regard to case.
    Known(Vec<String>),
}

impl People {
    /// The names online (none while unknown).
    pub fn names(&self) -> &[String] {
        match self {
            Self::Unknown => &[],
            Self::Known(names) => names,
        }
    }

    /// Takes a new list (any order) and returns who joined and who left since the last one:
    /// nobody for the first list.
    pub fn update(&mut self, mut users: Vec<String>) -> Changes {
        users.sort_by_key(|u| u.to_ascii_lowercase());
        let mut changes = Changes::default();
        if let Self::Known(old) = self {
            changes.joined = users.iter().filter(|u| !old.contains(u)).cloned().collect();
            changes.left = old.iter().filter(|u| !users.contains(u)).cloned().collect();
        }
        *self = Self::Known(users);
        changes
    }

    /// The names that `prefix` begins (ignoring ASCII case), itself included, in the list's
    /// order.
    pub fn matching(&self, prefix: &str) -> Vec<&str> {
        let lower = prefix.to_ascii_lowercase();
        self.names()
            .iter()
            .filter(|p| p.to_ascii_lowercase().starts_with(&lower))
            .map(String::as_str)
            .collect()
    }
}

/// Who came and went between two lists.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Changes {
    /// On the new list only.
    pub joined: Vec<String>,
    /// On the old list only.
    pub left: Vec<String>,
}

/// Whether a side pane is shown: the people pane (F2) or the room list (F3).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum SidePane {
    /// Decided by the terminal's width.
    #[default]
    Auto,
    /// Shown, whatever the width (toggled on).
    Shown,
    /// Hidden, whatever the width (toggled off).
    Hidden,
}

impl SidePane {
    /// Whether the pane shows, where the width alone would show it if `wide`.
    pub fn shown(self, wide: bool) -> bool {
        match self {
            Self::Auto => wide,
            Self::Shown => true,
            Self::Hidden => false,
        }
    }

    /// F2 / F3: hides the pane if it shows, else shows it (from then on, whatever the width).
    pub fn toggle(&mut self, wide: bool) {
        *self = if self.shown(wide) {
            Self::Hidden
        } else {
            Self::Shown
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(n: &[&str]) -> Vec<String> {
        n.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn the_first_list_is_not_news_and_later_ones_are_compared() {
        let mut people = People::default();
        assert!(people.names().is_empty());
        assert_eq!(people.update(names(&["bob", "Alice"])), Changes::default());
        assert_eq!(people.names(), ["Alice", "bob"], "sorted without case");
        assert_eq!(
            people.update(names(&["carol", "Alice"])),
            Changes {
                joined: names(&["carol"]),
                left: names(&["bob"]),
            }
        );
        assert_eq!(
            people.update(names(&["Alice", "carol"])),
            Changes::default()
        );
    }

    #[test]
    fn completion_finds_every_name_the_prefix_begins() {
        let people = People::Known(names(&["bob", "Carol", "carl"]));
        assert_eq!(people.matching("CA"), ["Carol", "carl"]);
        assert_eq!(
            people.matching("carl"),
            ["carl"],
            "a whole name fits itself"
        );
        assert!(people.matching("carlo").is_empty());
        assert!(People::Unknown.matching("b").is_empty());
    }

    #[test]
    fn f2_flips_what_is_shown() {
        let mut pane = SidePane::default();
        assert!(pane.shown(true) && !pane.shown(false));
        pane.toggle(false);
        assert_eq!(pane, SidePane::Shown);
        assert!(pane.shown(false));
        pane.toggle(false);
        assert_eq!(pane, SidePane::Hidden);
        assert!(!pane.shown(true));
        let mut pane = SidePane::Auto;
        pane.toggle(true);
        assert_eq!(pane, SidePane::Hidden);
    }
}
