//! `web`, release N: see `hadrill_sut::web_cli`.

use hadrill_sut::release::Release;

fn main() {
    hadrill_sut::web_cli::main(Release::Current)
}
