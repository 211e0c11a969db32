//! `web`, release N+1 (installed as `/usr/local/bin/web` in its image): see
//! `hadrill_sut::web_cli`.

use hadrill_sut::release::Release;

fn main() {
    hadrill_sut::web_cli::main(Release::Next)
}
