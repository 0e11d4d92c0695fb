//! PURE sparse Merkle sum trie (being written, issue 3).
