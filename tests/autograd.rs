//! Autodiff semantics: accumulation, zero_grad, detach, no_grad, frozen parameters,
//! explicit upstream gradients and the errors for misuse.

use fovea::{no_grad, Device, Tensor};

fn t(v: &[f32], s: &[usize]) -> Tensor {
    Tensor::from_vec(v.to_vec(), s, &Device::cpu()).unwrap()
}

#[test]
fn gradients_accumulate_until_zeroed() {
    let x = t(&[1.0, 2.0, 3.0], &[3]).requires_grad();
    x.square().sum().backward().unwrap();
    assert_eq!(x.grad().unwrap().to_vec().unwrap(), vec![2.0, 4.0, 6.0]);
    x.square().sum().backward().unwrap();
    assert_eq!(x.grad().unwrap().to_vec().unwrap(), vec![4.0, 8.0, 12.0]);
    x.zero_grad();
    assert!(x.grad().is_none());
    x.mul_scalar(3.0).sum().backward().unwrap();
    assert_eq!(x.grad().unwrap().to_vec().unwrap(), vec![3.0; 3]);
}

#[test]
fn shared_subexpressions_sum_their_paths() {
    // y = x·x + x → dy/dx = 2x + 1, with x reaching the output by three paths.
    let x = t(&[0.5, -2.0], &[2]).requires_grad();
    let y = x.mul(&x).unwrap().add(&x).unwrap();
    y.sum().backward().unwrap();
    assert_eq!(x.grad().unwrap().to_vec().unwrap(), vec![2.0, -3.0]);
}

#[test]
fn gradients_summed_in_place_never_change_a_shared_or_held_gradient() {
    // A sum hands both inputs one gradient tensor: a's second path must not add into the
    // buffer that b's gradient shares.
    let a = t(&[1.0, 2.0], &[2]).requires_grad();
    let b = t(&[3.0, 4.0], &[2]).requires_grad();
    a.add(&b)
        .unwrap()
        .add(&a)
        .unwrap()
        .sum()
        .backward()
        .unwrap();
    assert_eq!(a.grad().unwrap().to_vec().unwrap(), vec![2.0, 2.0]);
    assert_eq!(b.grad().unwrap().to_vec().unwrap(), vec![1.0, 1.0]);
    // A gradient the caller holds keeps its values when the next backward adds to it.
    let held = b.grad().unwrap();
    b.mul_scalar(3.0).sum().backward().unwrap();
    assert_eq!(held.to_vec().unwrap(), vec![1.0, 1.0]);
    assert_eq!(b.grad().unwrap().to_vec().unwrap(), vec![4.0, 4.0]);
    // Inside the graph, a node reached by several paths sums them (here into a buffer
    // nothing else holds).
    let x = t(&[0.5, -1.5], &[2]).requires_grad();
    let h = x.mul_scalar(2.0);
    let y = h.square().add(&h.mul_scalar(3.0)).unwrap().add(&h).unwrap();
    y.sum().backward().unwrap();
    // dy/dh = 2h + 4, dh/dx = 2.
    assert_eq!(x.grad().unwrap().to_vec().unwrap(), vec![12.0, -4.0]);
}

#[test]
fn detach_and_no_grad_cut_the_graph() {
    let x = t(&[1.0, 2.0], &[2]).requires_grad();
    let y = x.detach().mul_scalar(2.0).add(&x).unwrap();
    y.sum().backward().unwrap();
    assert_eq!(x.grad().unwrap().to_vec().unwrap(), vec![1.0, 1.0]);
    let z = no_grad(|| x.square());
    assert!(!z.tracks_grad());
    assert!(z.sum().backward().is_err());
    assert!(fovea::is_grad_enabled());
}

#[test]
fn frozen_parameters_get_no_gradient() {
    let w = t(&[1.0, 2.0], &[2]).requires_grad();
    let b = t(&[0.5, 0.5], &[2]).requires_grad();
    w.set_requires_grad(false);
    let loss = w.mul(&b).unwrap().sum();
    loss.backward().unwrap();
    assert!(
        w.grad().is_none(),
        "a frozen parameter must not receive a gradient"
    );
    assert_eq!(b.grad().unwrap().to_vec().unwrap(), vec![1.0, 2.0]);
    // Freezing after the graph was built still keeps the gradient away.
    let w2 = t(&[3.0], &[1]).requires_grad();
    let loss = w2.square().sum();
    w2.set_requires_grad(false);
    loss.backward().unwrap();
    assert!(
        w2.grad().is_none(),
        "a parameter frozen after the forward pass still got a gradient"
    );
}

#[test]
fn backward_needs_a_scalar_or_an_explicit_gradient() {
    let x = t(&[1.0, 2.0, 3.0], &[3]).requires_grad();
    let y = x.mul_scalar(2.0);
    let err = y.backward().unwrap_err().to_string();
    assert!(
        err.contains("[3]") && err.contains("backward_with"),
        "{err}"
    );
    assert!(y.backward_with(&t(&[1.0], &[1])).is_err());
    y.backward_with(&t(&[1.0, 0.0, -1.0], &[3])).unwrap();
    assert_eq!(x.grad().unwrap().to_vec().unwrap(), vec![2.0, 0.0, -2.0]);
}

#[test]
fn assign_updates_every_handle_outside_the_graph() {
    let p = t(&[1.0, 2.0], &[2]).requires_grad();
    let alias = p.clone();
    no_grad(|| p.assign(&p.sub_scalar(1.0))).unwrap();
    assert_eq!(alias.to_vec().unwrap(), vec![0.0, 1.0]);
    assert!(p.assign(&t(&[1.0], &[1])).is_err());
    assert!(p.is_requires_grad());
}

#[test]
fn deep_graphs_do_not_overflow_the_stack() {
    let x = t(&[1.0], &[1]).requires_grad();
    let mut y = x.clone();
    for _ in 0..20_000 {
        y = y.add_scalar(0.0);
    }
    y.sum().backward().unwrap();
    assert_eq!(x.grad().unwrap().to_vec().unwrap(), vec![1.0]);
}

#[test]
fn a_second_backward_needs_the_graph_retained() {
    let x = t(&[1.0, 2.0], &[2]).requires_grad();
    let y = x.square().sum();
    y.backward().unwrap();
    let err = y.backward().unwrap_err().to_string();
    assert!(
        err.contains("second time") && err.contains("backward_retain_graph"),
        "{err}"
    );
    assert_eq!(x.grad().unwrap().to_vec().unwrap(), vec![2.0, 4.0]);

    let z = x.square().sum();
    z.backward_retain_graph().unwrap();
    z.backward().unwrap();
    assert_eq!(x.grad().unwrap().to_vec().unwrap(), vec![6.0, 12.0]);
}

#[test]
fn an_activation_over_a_given_up_tensor_never_changes_what_others_see() {
    let v = [-2.0, -0.5, 0.0, 0.5, 7.0, f32::NAN];
    let relu6 = |x: f32| if x.is_nan() { x } else { x.clamp(0.0, 6.0) };
    let a = t(&v, &[2, 3]);
    let want: Vec<f32> = v.iter().map(|&x| relu6(x)).collect();
    let same = |got: Vec<f32>, want: &[f32]| {
        got.iter()
            .zip(want)
            .all(|(g, w)| g.to_bits() == w.to_bits())
    };
    // Another handle on the tensor, or a view sharing its buffer, keeps its values.
    let got = a.clone().into_relu6().to_vec().unwrap();
    assert!(same(got, &want));
    let got = a.reshape(&[6]).unwrap().into_relu6().to_vec().unwrap();
    assert!(same(got, &want));
    assert!(
        same(a.to_vec().unwrap(), &v),
        "the original was written over"
    );
    // A temporary nothing else holds gives the same values.
    let got = a.mul_scalar(1.0).into_relu6().to_vec().unwrap();
    assert!(same(got, &want));

    // Through a graph the activation is recorded, and its gradient flows.
    let x = t(&[-1.0, 2.0, 8.0], &[3]).requires_grad();
    let y = x.mul_scalar(1.0).into_relu6();
    assert!(y.tracks_grad());
    y.sum().backward().unwrap();
    assert_eq!(x.grad().unwrap().to_vec().unwrap(), vec![0.0, 1.0, 0.0]);
    let y = x.clone().into_relu();
    y.sum().backward().unwrap();
    assert_eq!(x.grad().unwrap().to_vec().unwrap(), vec![0.0, 2.0, 1.0]);
}
