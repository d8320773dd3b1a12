"""Learning by building: neurons, an MLP, convolution and pooling in plain NumPy, each checked
against the real thing (torch autograd, ``torch.nn.functional``) in the tests."""

from .activations import (ACTIVATIONS, leaky_relu, leaky_relu_derivative, relu, relu_derivative, sigmoid,
                          sigmoid_derivative, softmax, tanh, tanh_derivative)
from .conv import avg_pool2d, avg_pool3d, conv2d, conv3d, max_pool2d, max_pool3d, output_size
from .mlp import ScratchMLP, numerical_gradient
from .neuron import LogisticNeuron, Perceptron, sigmoid_neuron

__all__ = ["ACTIVATIONS", "LogisticNeuron", "Perceptron", "ScratchMLP", "avg_pool2d", "avg_pool3d", "conv2d", "conv3d",
           "leaky_relu", "leaky_relu_derivative", "max_pool2d", "max_pool3d", "numerical_gradient", "output_size",
           "relu", "relu_derivative", "sigmoid", "sigmoid_derivative", "sigmoid_neuron", "softmax", "tanh",
           "tanh_derivative"]
