// Importing this registers every model family with the registry.
import './keras/index.js';
import './vit/index.js';
import './cnn/index.js';
import './swin.js';
