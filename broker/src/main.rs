fn main() {
    println!("broker: not implemented yet (see its issue)");
}
